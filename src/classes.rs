//! Class names and colours (Cityscapes, the FFNet training set) and parsing of the
//! `classes` setting.

use crate::error::{Error, Result};

pub const CITYSCAPES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

/// The Cityscapes colour palette (RGB), as published with the dataset.
pub const CITYSCAPES_PALETTE: [[u8; 3]; 19] = [
    [128, 64, 128],
    [244, 35, 232],
    [70, 70, 70],
    [102, 102, 156],
    [190, 153, 153],
    [153, 153, 153],
    [250, 170, 30],
    [220, 220, 0],
    [107, 142, 35],
    [152, 251, 152],
    [70, 130, 180],
    [220, 20, 60],
    [255, 0, 0],
    [0, 0, 142],
    [0, 0, 70],
    [0, 60, 100],
    [0, 80, 100],
    [0, 0, 230],
    [119, 11, 32],
];

/// Default foreground classes for multi-class models.
pub const DEFAULT_CLASSES: &str = "person,rider";

/// Colour of class `i` (Cityscapes palette, then a deterministic spread for more classes).
pub fn palette_color(i: usize) -> [u8; 3] {
    if i < CITYSCAPES_PALETTE.len() {
        CITYSCAPES_PALETTE[i]
    } else {
        let h = (i as u32).wrapping_mul(2_654_435_761);
        [(h >> 24) as u8, (h >> 16) as u8, (h >> 8) as u8]
    }
}

/// Parses `person,rider` or `11,12` (names are Cityscapes; spaces and case are ignored;
/// `traffic_light` and `traffic-light` both work).
pub fn parse_classes(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let idx = if let Ok(n) = item.parse::<usize>() {
            if n > 255 {
                return Err(Error::Config(format!(
                    "class index {n} is too large (0..255)"
                )));
            }
            n
        } else {
            let norm = item.to_ascii_lowercase().replace(['_', '-'], " ");
            CITYSCAPES.iter().position(|c| *c == norm).ok_or_else(|| {
                Error::Config(format!(
                    "unknown class '{item}'; use indices or Cityscapes names: {}",
                    CITYSCAPES.join(", ")
                ))
            })?
        };
        if !out.contains(&idx) {
            out.push(idx);
        }
    }
    if out.is_empty() {
        return Err(Error::Config(
            "classes is empty; example: person,rider or 11,12".into(),
        ));
    }
    Ok(out)
}

/// Parses a colour: `#RRGGBB`, `0xRRGGBB`, `RRGGBB`, `r,g,b`, or a basic name.
pub fn parse_color(s: &str) -> Result<[u8; 3]> {
    let t = s.trim().to_ascii_lowercase();
    let named = match t.as_str() {
        "red" => Some([255, 0, 0]),
        "green" => Some([0, 255, 0]),
        "blue" => Some([0, 0, 255]),
        "yellow" => Some([255, 255, 0]),
        "cyan" => Some([0, 255, 255]),
        "magenta" => Some([255, 0, 255]),
        "white" => Some([255, 255, 255]),
        "black" => Some([0, 0, 0]),
        "orange" => Some([255, 165, 0]),
        "purple" => Some([128, 0, 128]),
        _ => None,
    };
    if let Some(c) = named {
        return Ok(c);
    }
    let bad = || {
        Error::Config(format!(
            "colour '{s}' is not understood; use #RRGGBB (e.g. #00ff00), r,g,b (0,255,0) or a name (green)"
        ))
    };
    if t.contains(',') {
        let parts: Vec<_> = t.split(',').map(|p| p.trim().parse::<u8>()).collect();
        if parts.len() == 3 && parts.iter().all(|p| p.is_ok()) {
            let v: Vec<u8> = parts.into_iter().map(|p| p.expect("checked")).collect();
            return Ok([v[0], v[1], v[2]]);
        }
        return Err(bad());
    }
    let hex = t
        .strip_prefix('#')
        .or_else(|| t.strip_prefix("0x"))
        .unwrap_or(&t);
    if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let v = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
        return Ok([(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_name_and_index() {
        assert_eq!(parse_classes("person,rider").unwrap(), vec![11, 12]);
        assert_eq!(parse_classes(" 11 , Traffic_Light ").unwrap(), vec![11, 6]);
        assert_eq!(parse_classes("car,car").unwrap(), vec![13]);
        assert!(
            parse_classes("persn")
                .unwrap_err()
                .to_string()
                .contains("Cityscapes")
        );
        assert!(parse_classes("").is_err());
    }

    #[test]
    fn colours() {
        assert_eq!(parse_color("#00ff00").unwrap(), [0, 255, 0]);
        assert_eq!(parse_color("0x102030").unwrap(), [0x10, 0x20, 0x30]);
        assert_eq!(parse_color("1, 2,3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_color("Red").unwrap(), [255, 0, 0]);
        for bad in ["#12345", "zzzzzz", "1,2", "300,0,0", "#gg0000"] {
            assert!(parse_color(bad).is_err(), "{bad}");
        }
    }
}
