//! `.modelinfo` files (GStreamer 1.28's description of a model's tensors, read by its
//! inference elements): segpreproc uses the input tensor's section like its own properties.
//!
//! The file is ini-style, one section per tensor, titled with the tensor's name in the model,
//! plus a `[modelinfo]` section with `version` (major 1 is understood). Keys used here, of the
//! input tensor's section: `dir` (`input`/`output`), `dims` (comma-separated, -1 = dynamic),
//! `dims-order` (`row-major`, the default, or `col-major`, which no segpreproc layout is),
//! `ranges` (`min,max` for every channel, or one `min,max` pair per channel separated by `;`):
//! 8-bit input 0…255 is mapped to min…max, `x · (max − min)/255 + min`.
//! The file is looked up next to the model as `<model>.modelinfo`, then with the model's
//! extension replaced (`model.onnx` → `model.modelinfo`).

use std::path::{Path, PathBuf};

use super::Normalization;
use crate::error::{Error, Result};
use crate::tensor::{Layout, guess_layout};

const SUPPORTED_MAJOR: u32 = 1;

/// What a `.modelinfo` file says about the model's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct InputInfo {
    /// The section's title: the tensor's name in the model.
    pub name: String,
    /// Height and width when `dims` gives them (4 dims, concrete), and the layout they imply.
    pub size: Option<(usize, usize)>,
    pub layout: Option<Layout>,
    /// From `ranges`.
    pub normalization: Option<Normalization>,
}

/// The `.modelinfo` file next to `model`, if there is one.
pub fn find_for(model: &Path) -> Option<PathBuf> {
    let mut appended = model.as_os_str().to_owned();
    appended.push(".modelinfo");
    [PathBuf::from(appended), model.with_extension("modelinfo")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads `path` and returns its input tensor: the section named `input_name` when given and
/// present, else the first section with `dir=input`.
pub fn load_input(path: &Path, input_name: Option<&str>) -> Result<Option<InputInfo>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    parse_input(&text, input_name).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// The `id` a `.modelinfo` file gives the output tensor `output` (inference elements name
/// their output tensors with it).
pub fn output_id(path: &Path, output: &str) -> Result<Option<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let all = sections(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    check_version(&all).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(all
        .iter()
        .find(|s| s.0 == output && get(s, "dir") != Some("input"))
        .and_then(|s| get(s, "id"))
        .map(str::to_string))
}

type Section = (String, Vec<(String, String)>);

fn sections(text: &str) -> std::result::Result<Vec<Section>, String> {
    let mut out: Vec<Section> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(title) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((title.trim().to_string(), Vec::new()));
        } else if let Some((k, v)) = line.split_once('=') {
            let Some(section) = out.last_mut() else {
                return Err(format!("line {}: a key before any [section]", n + 1));
            };
            section.1.push((k.trim().to_string(), v.trim().to_string()));
        } else {
            return Err(format!(
                "line {}: neither [section] nor key=value: {line}",
                n + 1
            ));
        }
    }
    Ok(out)
}

fn get<'a>(section: &'a Section, key: &str) -> Option<&'a str> {
    section
        .1
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn check_version(all: &[Section]) -> std::result::Result<(), String> {
    let Some(info) = all.iter().find(|s| s.0 == "modelinfo") else {
        return Err("no [modelinfo] section with the format version".into());
    };
    let version = get(info, "version").ok_or("[modelinfo] has no version")?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("version '{version}' is not Major.Minor"))?;
    if major != SUPPORTED_MAJOR {
        return Err(format!(
            "version {version} is not understood (major version {SUPPORTED_MAJOR} is)"
        ));
    }
    Ok(())
}

/// Parses the text of a `.modelinfo` file (see [`load_input`]).
pub fn parse_input(
    text: &str,
    input_name: Option<&str>,
) -> std::result::Result<Option<InputInfo>, String> {
    let all = sections(text)?;
    check_version(&all)?;
    let tensors = || all.iter().filter(|s| s.0 != "modelinfo");
    let section = input_name
        .and_then(|name| tensors().find(|s| s.0 == name))
        .or_else(|| tensors().find(|s| get(s, "dir") == Some("input")));
    let Some(section) = section else {
        return Ok(None);
    };
    if let Some(order) = get(section, "dims-order")
        && order != "row-major"
    {
        return Err(format!(
            "[{}] dims-order={order}: segpreproc writes row-major tensors only",
            section.0
        ));
    }
    let (size, layout) = match get(section, "dims") {
        Some(d) => size_and_layout(d).map_err(|e| format!("[{}] dims: {e}", section.0))?,
        None => (None, None),
    };
    let normalization = get(section, "ranges")
        .map(parse_ranges)
        .transpose()
        .map_err(|e| format!("[{}] ranges: {e}", section.0))?;
    Ok(Some(InputInfo {
        name: section.0.clone(),
        size,
        layout,
        normalization,
    }))
}

/// Height and width of 4 image dims (both concrete) and the layout they suggest.
type SizeLayout = (Option<(usize, usize)>, Option<Layout>);

fn size_and_layout(dims: &str) -> std::result::Result<SizeLayout, String> {
    let d: Vec<i64> = dims
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<i64>()
                .map_err(|_| format!("'{x}' is not an integer"))
        })
        .collect::<std::result::Result<_, _>>()?;
    if d.len() != 4 {
        return Err(format!("{} dims, an image tensor has 4", d.len()));
    }
    let layout = guess_layout(&d);
    let (h, w) = match layout {
        Layout::Nchw => (d[2], d[3]),
        Layout::Nhwc => (d[1], d[2]),
    };
    let size = (h > 0 && w > 0).then_some((h as usize, w as usize));
    Ok((size, Some(layout)))
}

/// `ranges` as segpreproc's normalization: x·scale, then (x − mean)/std, with scale = 1/255,
/// mean = −min/(max − min), std = 1/(max − min), so 0…255 becomes min…max per channel.
fn parse_ranges(text: &str) -> std::result::Result<Normalization, String> {
    let pairs: Vec<(f32, f32)> = text
        .split(';')
        .map(|pair| {
            let (a, b) = pair
                .split_once(',')
                .ok_or_else(|| format!("'{pair}' is not min,max"))?;
            let parse = |s: &str| {
                s.trim()
                    .parse::<f32>()
                    .map_err(|_| format!("'{s}' is not a number"))
            };
            Ok((parse(a)?, parse(b)?))
        })
        .collect::<std::result::Result<_, String>>()?;
    let per_channel: [(f32, f32); 3] = match pairs.as_slice() {
        [one] => [*one; 3],
        [r, g, b] => [*r, *g, *b],
        _ => {
            return Err(format!(
                "{} ranges: give one for all channels or three (R;G;B)",
                pairs.len()
            ));
        }
    };
    if per_channel
        .iter()
        .any(|(min, max)| max <= min || !min.is_finite() || !max.is_finite())
    {
        return Err("every range needs min < max".into());
    }
    Ok(Normalization {
        scale: 1.0 / 255.0,
        mean: per_channel.map(|(min, max)| -min / (max - min)),
        std: per_channel.map(|(min, max)| 1.0 / (max - min)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELFIE: &str = "[modelinfo]\nversion=1.0\n\n[image]\ndir=input\ntype=float32\n\
                          dims=1,256,256,3\nranges=0.0,1.0\n\n[mask]\ndir=output\ntype=float32\n\
                          dims=1,256,256,1\nid=segmentation-mask\n";

    fn apply(n: &Normalization, x: f32, c: usize) -> f32 {
        (x * n.scale - n.mean[c]) / n.std[c]
    }

    #[test]
    fn the_input_section_gives_size_layout_and_ranges() {
        let info = parse_input(SELFIE, None).unwrap().unwrap();
        assert_eq!(info.name, "image");
        assert_eq!(info.size, Some((256, 256)));
        assert_eq!(info.layout, Some(Layout::Nhwc));
        let n = info.normalization.unwrap();
        assert!((apply(&n, 0.0, 0) - 0.0).abs() < 1e-6);
        assert!((apply(&n, 255.0, 2) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn per_channel_ranges_map_0_255_onto_each_range() {
        let text = "[modelinfo]\nversion=1.0\n[x]\ndir=input\ndims=1,3,-1,-1\n\
                    ranges=-1.0,1.0;0.0,255.0;16.0,235.0\n";
        let info = parse_input(text, Some("x")).unwrap().unwrap();
        assert_eq!((info.size, info.layout), (None, Some(Layout::Nchw)));
        let n = info.normalization.unwrap();
        for (c, (lo, hi)) in [(-1.0, 1.0), (0.0, 255.0), (16.0, 235.0)]
            .into_iter()
            .enumerate()
        {
            assert!((apply(&n, 0.0, c) - lo).abs() < 1e-4, "channel {c} at 0");
            assert!(
                (apply(&n, 255.0, c) - hi).abs() < 1e-3,
                "channel {c} at 255"
            );
        }
    }

    #[test]
    fn the_named_input_wins_over_the_first_input() {
        let text =
            "[modelinfo]\nversion=1.0\n[a]\ndir=input\nranges=0,1\n[b]\ndir=input\nranges=-1,1\n";
        assert_eq!(parse_input(text, Some("b")).unwrap().unwrap().name, "b");
        assert_eq!(parse_input(text, Some("zzz")).unwrap().unwrap().name, "a");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let e = parse_input("[image]\ndir=input\n", None).unwrap_err();
        assert!(e.contains("[modelinfo]"), "{e}");
        let e = parse_input("[modelinfo]\nversion=2.0\n", None).unwrap_err();
        assert!(e.contains("2.0"), "{e}");
        let e = parse_input(
            "[modelinfo]\nversion=1.0\n[i]\ndir=input\ndims-order=col-major\n",
            None,
        )
        .unwrap_err();
        assert!(e.contains("col-major"), "{e}");
        let e = parse_input(
            "[modelinfo]\nversion=1.0\n[i]\ndir=input\nranges=1,0\n",
            None,
        )
        .unwrap_err();
        assert!(e.contains("min < max"), "{e}");
        assert_eq!(
            parse_input("[modelinfo]\nversion=1.0\n[o]\ndir=output\n", None),
            Ok(None)
        );
    }
}
