//! Just enough of the ONNX protobuf wire format to describe a model without loading it:
//! opsets, nodes, initializer sizes and metadata. (ONNX Runtime's API does not expose the graph's
//! initializers or node list, and a full protobuf stack would be a large dependency for a
//! handful of fields.)

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct ModelSummary {
    /// Graph input and output names, in order.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Quantization of graph inputs read by a DequantizeLinear (name → scale, zero point).
    pub input_quantization: BTreeMap<String, (f32, i32)>,
    /// Quantization of graph outputs written by a QuantizeLinear.
    pub output_quantization: BTreeMap<String, (f32, i32)>,
    /// (domain, version); the default domain is "".
    pub opsets: Vec<(String, i64)>,
    /// Operator type → count.
    pub ops: BTreeMap<String, usize>,
    /// The graph's nodes, in file order.
    pub nodes: Vec<Node>,
    /// Number of weights (elements of all initializers).
    pub parameters: u64,
    pub initializer_bytes: u64,
    /// The model's `metadata_props` (key → value).
    pub metadata: BTreeMap<String, String>,
    /// Graph inputs whose first (batch) dimension is symbolic: input name → the symbol
    /// (what ONNX Runtime's free-dimension override takes).
    pub input_batch_symbols: BTreeMap<String, String>,
}

/// One node of the graph: what it is and which tensors it reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub op_type: String,
    /// Empty when the model leaves the node unnamed.
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

impl ModelSummary {
    /// The node called `name` (node names are unique in a valid model).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| !name.is_empty() && n.name == name)
    }

    /// Whether `node` reads one of the graph's inputs.
    pub fn reads_graph_input(&self, node: &Node) -> bool {
        node.inputs.iter().any(|i| self.inputs.contains(i))
    }

    /// Whether `node` writes one of the graph's outputs.
    pub fn writes_graph_output(&self, node: &Node) -> bool {
        node.outputs.iter().any(|o| self.outputs.contains(o))
    }
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

/// An initializer's name and, for scalars, its value (what Q/DQ scales and zero points are).
struct Initializer {
    name: String,
    scalar: Option<f64>,
}

fn tensor(bytes: &[u8], summary: &mut ModelSummary) -> Initializer {
    let mut dims: Vec<u64> = Vec::new();
    let mut data_type = 0;
    let mut name = String::new();
    let mut raw: &[u8] = &[];
    let mut first_float = None;
    let mut first_int = None;
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
            (4, Field::Bytes(p)) if p.len() >= 4 => {
                first_float = Some(f32::from_le_bytes([p[0], p[1], p[2], p[3]]) as f64)
            }
            (5, Field::Bytes(p)) => first_int = Reader::new(p).varint().map(|v| v as i64 as f64),
            (5, Field::Varint(v)) => first_int = Some(v as i64 as f64),
            (8, Field::Bytes(n)) => name = String::from_utf8_lossy(n).into_owned(),
            (9, Field::Bytes(d)) => raw = d,
            _ => {}
        }
    }
    let count: u64 = dims.iter().product();
    summary.parameters += count;
    summary.initializer_bytes += count * element_size(data_type);
    let scalar = if count == 1 {
        match (data_type, raw.len()) {
            (1, 4..) => Some(f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as f64),
            (2, 1..) => Some(raw[0] as f64),
            (3, 1..) => Some(raw[0] as i8 as f64),
            (4, 2..) => Some(u16::from_le_bytes([raw[0], raw[1]]) as f64),
            (5, 2..) => Some(i16::from_le_bytes([raw[0], raw[1]]) as f64),
            (1, 0) => first_float,
            (_, 0) => first_int,
            _ => None,
        }
    } else {
        None
    };
    Initializer { name, scalar }
}

fn strings(bytes: &[u8], field: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Reader::new(bytes);
    while let Some((n, f)) = r.next() {
        if let (true, Field::Bytes(s)) = (n == field, f) {
            out.push(String::from_utf8_lossy(s).into_owned());
        }
    }
    out
}

/// The first dimension's `dim_param` of a ValueInfoProto (type 2 → tensor_type 1 →
/// shape 2 → first dim 1 → dim_param 2); None when it is a number or absent.
fn first_dim_symbol(value_info: &[u8]) -> Option<String> {
    let tensor_type = bytes_field(bytes_field(value_info, 2)?, 1)?;
    let first_dim = bytes_field(bytes_field(tensor_type, 2)?, 1)?;
    strings(first_dim, 2).pop().filter(|s| !s.is_empty())
}

/// The first length-delimited field numbered `want` of a message.
fn bytes_field(message: &[u8], want: u64) -> Option<&[u8]> {
    let mut r = Reader::new(message);
    while let Some((n, f)) = r.next() {
        if let (true, Field::Bytes(b)) = (n == want, f) {
            return Some(b);
        }
    }
    None
}

fn node(bytes: &[u8]) -> Node {
    Node {
        op_type: strings(bytes, 4).pop().unwrap_or_default(),
        name: strings(bytes, 3).pop().unwrap_or_default(),
        inputs: strings(bytes, 1),
        outputs: strings(bytes, 2),
    }
}

fn graph(bytes: &[u8], summary: &mut ModelSummary) {
    // Scalar initializers by name: the Q/DQ scales and zero points.
    let mut scalars: BTreeMap<String, f64> = BTreeMap::new();
    let mut r = Reader::new(bytes);
    while let Some((n, f)) = r.next() {
        match (n, f) {
            (1, Field::Bytes(bytes)) => {
                let n = node(bytes);
                *summary.ops.entry(n.op_type.clone()).or_default() += 1;
                summary.nodes.push(n);
            }
            (5, Field::Bytes(t)) => {
                let init = tensor(t, summary);
                if let Some(v) = init.scalar {
                    scalars.insert(init.name, v);
                }
            }
            (11, Field::Bytes(vi)) => {
                let name = strings(vi, 1).pop().unwrap_or_default();
                if let Some(symbol) = first_dim_symbol(vi) {
                    summary.input_batch_symbols.insert(name.clone(), symbol);
                }
                summary.inputs.push(name);
            }
            (12, Field::Bytes(vi)) => summary.outputs.extend(strings(vi, 1).into_iter().take(1)),
            _ => {}
        }
    }
    let q = |inputs: &[String]| -> Option<(f32, i32)> {
        let scale = *scalars.get(inputs.get(1)?)?;
        let zero = inputs
            .get(2)
            .and_then(|z| scalars.get(z))
            .copied()
            .unwrap_or(0.0);
        Some((scale as f32, zero as i32))
    };
    let mut input_quantization = BTreeMap::new();
    let mut output_quantization = BTreeMap::new();
    for n in &summary.nodes {
        let (ins, outs) = (&n.inputs, &n.outputs);
        match n.op_type.as_str() {
            "DequantizeLinear" if ins.first().is_some_and(|i| summary.inputs.contains(i)) => {
                if let Some(p) = q(ins) {
                    input_quantization.insert(ins[0].clone(), p);
                }
            }
            "QuantizeLinear" if outs.first().is_some_and(|o| summary.outputs.contains(o)) => {
                if let Some(p) = q(ins) {
                    output_quantization.insert(outs[0].clone(), p);
                }
            }
            _ => {}
        }
    }
    summary.input_quantization = input_quantization;
    summary.output_quantization = output_quantization;
}

/// A model file whose summary is read when first asked for, then kept: starting a session
/// asks for it up to three times (Q/DQ scales, the batch symbol, nodes left on the CPU).
pub struct ModelFile<'a> {
    path: &'a std::path::Path,
    summary: std::cell::OnceCell<Option<ModelSummary>>,
}

impl<'a> ModelFile<'a> {
    pub fn new(path: &'a std::path::Path) -> Self {
        ModelFile {
            path,
            summary: std::cell::OnceCell::new(),
        }
    }

    /// None when the file cannot be read or is not an ONNX model.
    pub fn summary(&self) -> Option<&ModelSummary> {
        self.summary
            .get_or_init(|| std::fs::read(self.path).ok().and_then(|b| summarize(&b)))
            .as_ref()
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
            (14, Field::Bytes(entry)) => {
                let (mut key, mut value) = (String::new(), String::new());
                let mut er = Reader::new(entry);
                while let Some((en, ef)) = er.next() {
                    match (en, ef) {
                        (1, Field::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
                        (2, Field::Bytes(v)) => value = String::from_utf8_lossy(v).into_owned(),
                        _ => {}
                    }
                }
                summary.metadata.insert(key, value);
            }
            _ => {}
        }
    }
    saw_graph.then_some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_props_are_read() {
        // ModelProto: graph (field 7, empty), two metadata_props (field 14) entries of
        // key (1) and value (2).
        let entry = |k: &str, v: &str| {
            let mut e = vec![0x0a, k.len() as u8];
            e.extend_from_slice(k.as_bytes());
            e.extend([0x12, v.len() as u8]);
            e.extend_from_slice(v.as_bytes());
            let mut f = vec![0x72, e.len() as u8];
            f.extend(e);
            f
        };
        let mut bytes = vec![0x3a, 0x00];
        bytes.extend(entry("mask", "segmentation-mask"));
        bytes.extend(entry("license", "Apache-2.0"));
        let s = summarize(&bytes).unwrap();
        assert_eq!(
            s.metadata.get("mask").map(String::as_str),
            Some("segmentation-mask")
        );
        assert_eq!(s.metadata.len(), 2);
    }

    #[test]
    fn symbolic_batch_dimensions_of_inputs_are_read() {
        let model = |path: &str| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            summarize(&std::fs::read(root.join(path)).unwrap()).unwrap()
        };
        let batched = model("models/selfie_segmentation_batch.onnx");
        assert_eq!(batched.inputs.len(), 1);
        assert_eq!(
            batched
                .input_batch_symbols
                .get(&batched.inputs[0])
                .map(String::as_str),
            Some("batch")
        );
        assert!(
            model("models/selfie_segmentation.onnx")
                .input_batch_symbols
                .is_empty()
        );
    }
}
