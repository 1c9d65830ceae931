//! Just enough of the ONNX protobuf wire format to describe a model without loading it:
//! opsets, operator types, and initializer sizes. (ONNX Runtime's API does not expose the
//! graph's initializers or node list, and a full protobuf stack would be a large
//! dependency for four fields.)

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct ModelSummary {
    /// (domain, version); the default domain is "".
    pub opsets: Vec<(String, i64)>,
    /// Operator type → count.
    pub ops: BTreeMap<String, usize>,
    /// Number of weights (elements of all initializers).
    pub parameters: u64,
    pub initializer_bytes: u64,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.pos)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn next(&mut self) -> Option<(u64, Field<'a>)> {
        if self.pos >= self.data.len() {
            return None;
        }
        let key = self.varint()?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.pos += 8;
                Field::Fixed
            }
            2 => {
                let len = self.varint()? as usize;
                let end = self.pos.checked_add(len)?;
                let bytes = self.data.get(self.pos..end)?;
                self.pos = end;
                Field::Bytes(bytes)
            }
            5 => {
                self.pos += 4;
                Field::Fixed
            }
            _ => return None,
        };
        Some((number, field))
    }
}

fn element_size(data_type: u64) -> u64 {
    match data_type {
        1 | 6 => 4,           // float, int32
        2 | 3 | 9 => 1,       // uint8, int8, bool
        4 | 5 | 10 | 16 => 2, // uint16, int16, float16, bfloat16
        7 | 11 | 13 => 8,     // int64, double, uint64
        12 => 4,              // uint32
        _ => 0,
    }
}

fn tensor(bytes: &[u8], summary: &mut ModelSummary) {
    let mut dims: Vec<u64> = Vec::new();
    let mut data_type = 0;
    let mut r = Reader::new(bytes);
    while let Some((n, f)) = r.next() {
        match (n, f) {
            (1, Field::Varint(d)) => dims.push(d),
            (1, Field::Bytes(packed)) => {
                let mut p = Reader::new(packed);
                while let Some(d) = p.varint() {
                    dims.push(d);
                }
            }
            (2, Field::Varint(t)) => data_type = t,
            _ => {}
        }
    }
    let count: u64 = dims.iter().product();
    summary.parameters += count;
    summary.initializer_bytes += count * element_size(data_type);
}

fn graph(bytes: &[u8], summary: &mut ModelSummary) {
    let mut r = Reader::new(bytes);
    while let Some((n, f)) = r.next() {
        match (n, f) {
            (1, Field::Bytes(node)) => {
                let mut nr = Reader::new(node);
                while let Some((nn, nf)) = nr.next() {
                    if let (4, Field::Bytes(op)) = (nn, nf) {
                        *summary
                            .ops
                            .entry(String::from_utf8_lossy(op).into_owned())
                            .or_default() += 1;
                    }
                }
            }
            (5, Field::Bytes(t)) => tensor(t, summary),
            _ => {}
        }
    }
}

/// Reads a .onnx file's bytes. Returns None when they are not an ONNX model.
pub fn summarize(bytes: &[u8]) -> Option<ModelSummary> {
    let mut summary = ModelSummary::default();
    let mut r = Reader::new(bytes);
    let mut saw_graph = false;
    while let Some((n, f)) = r.next() {
        match (n, f) {
            (7, Field::Bytes(g)) => {
                saw_graph = true;
                graph(g, &mut summary);
            }
            (8, Field::Bytes(opset)) => {
                let (mut domain, mut version) = (String::new(), 0i64);
                let mut or = Reader::new(opset);
                while let Some((on, of)) = or.next() {
                    match (on, of) {
                        (1, Field::Bytes(d)) => domain = String::from_utf8_lossy(d).into_owned(),
                        (2, Field::Varint(v)) => version = v as i64,
                        _ => {}
                    }
                }
                summary.opsets.push((domain, version));
            }
            _ => {}
        }
    }
    saw_graph.then_some(summary)
}
