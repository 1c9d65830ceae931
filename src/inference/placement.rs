//! Where ONNX Runtime put the model's nodes, and how that is told to a user: which nodes
//! (operator type and name, grouped) run on the CPU, what they touch in the model, and why,
//! when the provider said why.

use std::collections::BTreeMap;

use super::onnx_proto::ModelSummary;
use super::provider::Provider;

/// Operator types named one by one before the rest is counted ("and 9 more nodes").
const MAX_GROUPS: usize = 6;
/// Node names given per operator type.
const MAX_NAMES: usize = 3;
/// Distinct reasons quoted.
const MAX_REASONS: usize = 3;

/// One node as ONNX Runtime lists it in its placement report: "  Resize (up1)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedNode {
    pub op_type: String,
    /// Empty for an unnamed node.
    pub name: String,
}

/// Where ONNX Runtime put the model's nodes (from its "Node placements" log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// ONNX Runtime's provider name, e.g. "QNNExecutionProvider".
    pub provider: String,
    /// Nodes after partitioning: a compiling provider (QNN) counts one per partition.
    pub nodes: usize,
    /// The nodes ONNX Runtime listed (none when all nodes share one provider).
    pub listed: Vec<PlacedNode>,
}

impl Placement {
    /// Whether the listed nodes are the provider's compiled partitions
    /// ("QNNExecutionProvider_1209…_1"), not nodes of the model.
    pub fn is_compiled(&self) -> bool {
        !self.listed.is_empty()
            && self
                .listed
                .iter()
                .all(|n| n.op_type.starts_with(&self.provider))
    }

    /// What runs here, for a report: "1 compiled partition", or the nodes grouped by
    /// operator type with what they touch.
    pub fn describe(&self, facts: NodeFacts<'_>) -> String {
        let count = plural(self.nodes, "node");
        if self.listed.is_empty() {
            count
        } else if self.is_compiled() {
            plural(self.nodes, "compiled partition")
        } else {
            format!("{count}: {}", describe_nodes(&self.listed, facts))
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Reads ORT's verbose placement report: " All nodes placed on [P]. Number of nodes: N",
/// or per provider " Node(s) placed on [P]. Number of nodes: N" followed by one
/// "  OpType (name)" line per node (separate messages in ORT 1.2x, one message before).
pub fn parse_placements(log: &[String]) -> Vec<Placement> {
    let mut out: Vec<Placement> = Vec::new();
    let mut listing = false;
    for m in log {
        if let Some(p) = placement_header(m) {
            out.push(p);
            listing = true;
        } else if let (true, Some(last), Some(node)) = (listing, out.last_mut(), placed_node(m)) {
            last.listed.push(node);
        } else {
            listing = false;
        }
    }
    out
}

fn placement_header(message: &str) -> Option<Placement> {
    let (_, rest) = message.split_once("placed on [")?;
    let (provider, rest) = rest.split_once(']')?;
    let nodes = rest
        .split_once("Number of nodes:")
        .and_then(|(_, n)| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let listed = message.lines().skip(1).filter_map(placed_node).collect();
    Some(Placement {
        provider: provider.to_string(),
        nodes,
        listed,
    })
}

/// "  OpType (name)", indented by two spaces.
fn placed_node(line: &str) -> Option<PlacedNode> {
    let line = line.strip_prefix("  ")?.trim();
    let (op_type, rest) = line.split_once(" (")?;
    let name = rest.strip_suffix(')')?;
    if op_type.is_empty() || op_type.contains(char::is_whitespace) {
        return None;
    }
    Some(PlacedNode {
        op_type: op_type.to_string(),
        name: name.to_string(),
    })
}

/// What is known about the nodes beyond their placement.
#[derive(Clone, Copy, Default)]
pub struct NodeFacts<'a> {
    /// The model file's nodes, to say what a node touches.
    pub model: Option<&'a ModelSummary>,
    /// Why the provider refused a node (node name → the provider's reason).
    pub rejections: Option<&'a BTreeMap<String, String>>,
}

impl NodeFacts<'_> {
    fn reason(&self, node: &PlacedNode) -> Option<&str> {
        self.rejections?.get(&node.name).map(String::as_str)
    }
}

/// What a node touches: "graph input", "graph output", or nothing to say. From the model
/// file, else from the provider's reason (ONNX Runtime inserts Q/DQ nodes of its own, e.g.
/// "image_q" for a transposed input, that the file does not have).
fn role(node: &PlacedNode, facts: NodeFacts<'_>) -> Option<&'static str> {
    if let Some(model) = facts.model
        && let Some(n) = model.node(&node.name)
    {
        return if model.reads_graph_input(n) {
            Some("graph input")
        } else if model.writes_graph_output(n) {
            Some("graph output")
        } else {
            None
        };
    }
    let reason = facts.reason(node)?;
    if reason.contains("graph input") {
        Some("graph input")
    } else if reason.contains("graph output") {
        Some("graph output")
    } else {
        None
    }
}

fn named(node: &PlacedNode, facts: NodeFacts<'_>) -> String {
    let name = if node.name.is_empty() {
        "(unnamed)".to_string()
    } else {
        format!("'{}'", node.name)
    };
    match role(node, facts) {
        Some(r) => format!("{name} ({r})"),
        None => name,
    }
}

/// The nodes grouped by operator type, most frequent first, a few names each:
/// "QuantizeLinear 'image_q' (graph input), DequantizeLinear 'mask_dq' (graph output)" or
/// "Resize×12: 'up1', 'up2', 'up3' and 9 more; Conv 'head'".
pub fn describe_nodes(nodes: &[PlacedNode], facts: NodeFacts<'_>) -> String {
    let mut groups: BTreeMap<&str, Vec<&PlacedNode>> = BTreeMap::new();
    for n in nodes {
        groups.entry(n.op_type.as_str()).or_default().push(n);
    }
    let mut groups: Vec<(&str, Vec<&PlacedNode>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
    let singles = groups.iter().all(|(_, m)| m.len() == 1);
    let mut parts: Vec<String> = groups
        .iter()
        .take(MAX_GROUPS)
        .map(|(op, members)| describe_group(op, members, facts))
        .collect();
    let rest: usize = groups.iter().skip(MAX_GROUPS).map(|(_, m)| m.len()).sum();
    if rest > 0 {
        let types = groups.len() - MAX_GROUPS;
        parts.push(format!(
            "and {} of {}",
            plural(rest, "more node"),
            plural(types, "other operator type")
        ));
    }
    parts.join(if singles { ", " } else { "; " })
}

fn describe_group(op: &str, members: &[&PlacedNode], facts: NodeFacts<'_>) -> String {
    if let [one] = members {
        return format!("{op} {}", named(one, facts));
    }
    let names: Vec<String> = members
        .iter()
        .take(MAX_NAMES)
        .map(|n| named(n, facts))
        .collect();
    let more = members.len().saturating_sub(MAX_NAMES);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{op}×{}: {}{more}", members.len(), names.join(", "))
}

/// What is known about the nodes left on the CPU when a session runs on `active`.
pub(super) struct CpuNodes<'a> {
    pub placements: &'a [Placement],
    pub facts: NodeFacts<'a>,
}

impl CpuNodes<'_> {
    fn on_cpu(&self) -> impl Iterator<Item = &Placement> {
        let cpu = Provider::Cpu.ort_name();
        self.placements.iter().filter(move |p| p.provider == cpu)
    }

    /// The warning for nodes a non-CPU provider left to the CPU, None when there are none:
    /// "2 nodes of M run on the CPU, the rest on qnn: QuantizeLinear 'image_q' (graph
    /// input), …; qnn says: "…"; a model with quantized I/O runs wholly on qnn …".
    pub(super) fn warning(&self, active: Provider, model_path: &str) -> Option<String> {
        let count: usize = self.on_cpu().map(|p| p.nodes).sum();
        if active == Provider::Cpu || count == 0 {
            return None;
        }
        let listed: Vec<PlacedNode> = self.on_cpu().flat_map(|p| p.listed.clone()).collect();
        let everything = self.on_cpu().count() == self.placements.len();
        let head = if everything {
            format!("all nodes of {model_path} run on the CPU, none on {active}")
        } else {
            format!(
                "{} of {model_path} run on the CPU, the rest on {active}",
                plural(count, "node")
            )
        };
        let mut msg = format!("{head}: {}", self.which(&listed));
        if let Some(why) = self.reasons(&listed) {
            msg.push_str(&format!("; {active} says: {why}"));
        }
        if active == Provider::Qnn && !listed.is_empty() && self.only_io_quantization(&listed) {
            msg.push_str(
                "; a model with quantized I/O runs wholly on qnn \
                 (or set provider-options offload_graph_io_quantization=0)",
            );
        }
        Some(msg)
    }

    /// The nodes by name, or, when ONNX Runtime did not list them, the model's operators.
    fn which(&self, listed: &[PlacedNode]) -> String {
        if !listed.is_empty() {
            return describe_nodes(listed, self.facts);
        }
        match self.facts.model {
            Some(model) if !model.ops.is_empty() => {
                let mut ops: Vec<(&String, &usize)> = model.ops.iter().collect();
                ops.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
                let shown: Vec<String> = ops
                    .iter()
                    .take(MAX_GROUPS)
                    .map(|(op, n)| format!("{op}×{n}"))
                    .collect();
                let more = if ops.len() > MAX_GROUPS { ", …" } else { "" };
                format!("the model's {}{more}", shown.join(", "))
            }
            _ => "operators not listed by ONNX Runtime".into(),
        }
    }

    /// The provider's distinct reasons for refusing the listed nodes, quoted.
    fn reasons(&self, listed: &[PlacedNode]) -> Option<String> {
        let mut seen: Vec<&str> = Vec::new();
        for n in listed {
            if let Some(r) = self.facts.reason(n)
                && !seen.contains(&r)
            {
                seen.push(r);
            }
        }
        if seen.is_empty() {
            return None;
        }
        let quoted: Vec<String> = seen
            .iter()
            .take(MAX_REASONS)
            .map(|r| format!("\"{r}\""))
            .collect();
        Some(quoted.join(", "))
    }

    /// Whether every listed node quantizes a float graph input or dequantizes to a float
    /// graph output: the hand-over a quantized-I/O model does not need.
    fn only_io_quantization(&self, listed: &[PlacedNode]) -> bool {
        listed.iter().all(|n| {
            matches!(
                (n.op_type.as_str(), role(n, self.facts)),
                ("QuantizeLinear", Some("graph input"))
                    | ("DequantizeLinear", Some("graph output"))
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::onnx_proto::Node;

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            op_type: op.into(),
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The QDQ selfie model's boundary, as the ONNX file has it: the input's Q/DQ pair
    /// ("image_q", "image_dq") is ONNX Runtime's, inserted when it moves a Transpose.
    fn selfie_summary() -> ModelSummary {
        ModelSummary {
            inputs: vec!["image".into()],
            outputs: vec!["mask".into()],
            nodes: vec![
                node("Transpose", "conv2d/Transpose", &["image"], &["x"]),
                node("Sigmoid", "sig", &["x"], &["p"]),
                node(
                    "QuantizeLinear",
                    "mask_QuantizeLinear",
                    &["p", "s", "z"],
                    &["pq"],
                ),
                node(
                    "DequantizeLinear",
                    "mask_DequantizeLinear",
                    &["pq", "s", "z"],
                    &["mask"],
                ),
            ],
            ..Default::default()
        }
    }

    /// Lines as ONNX Runtime 1.24 with the onnxruntime-qnn 2.7 plugin logs them (HTP
    /// simulator, w8a8 selfie model): one message per line.
    fn selfie_log() -> Vec<String> {
        [
            "Node placements",
            " Node(s) placed on [QNNExecutionProvider]. Number of nodes: 1",
            "  QNNExecutionProvider_12092461040682605219_1 (QNNExecutionProvider_QNNExecutionProvider_12092461040682605219_1_0)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
            "  DequantizeLinear (mask_DequantizeLinear)",
            "  QuantizeLinear (image_q)",
            "Some nodes were not assigned to the preferred execution providers which may or may not have an negative impact on performance. e.g. ORT explicitly assigns shape related ops to CPU to improve perf.",
            "SaveMLValueNameIndexMapping",
        ]
        .map(String::from)
        .to_vec()
    }

    fn selfie_rejections() -> BTreeMap<String, String> {
        let log = [
            "Validation FAILED for 1 nodes in OrtNodeUnit (QuantizeLinear) :\n\tOperator type: QuantizeLinear Node name: image_q Node index: 584\n\tREASON : QNN EP is configured to not take Q nodes that consume a graph input.\n",
            "Validation FAILED for 1 nodes in OrtNodeUnit (DequantizeLinear) :\n\tOperator type: DequantizeLinear Node name: mask_DequantizeLinear Node index: 559\n\tREASON : QNN EP is configured to not take DQ nodes that generate a graph output.\n",
        ]
        .map(String::from);
        crate::inference::ort_log::parse_rejections(&log)
    }

    #[test]
    fn placements_are_read_from_one_message_per_line() {
        let p = parse_placements(&selfie_log());
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].provider, "QNNExecutionProvider");
        assert!(p[0].is_compiled());
        assert_eq!(p[1].nodes, 2);
        assert_eq!(
            p[1].listed,
            vec![
                PlacedNode {
                    op_type: "DequantizeLinear".into(),
                    name: "mask_DequantizeLinear".into()
                },
                PlacedNode {
                    op_type: "QuantizeLinear".into(),
                    name: "image_q".into()
                },
            ]
        );
        // The closing remark is not a node.
        assert!(!p[1].is_compiled());
    }

    #[test]
    fn placements_are_read_from_one_message_per_provider() {
        let log = vec![
            "Node placements".to_string(),
            " All nodes placed on [CPUExecutionProvider]. Number of nodes: 139".to_string(),
        ];
        assert_eq!(
            parse_placements(&log),
            vec![Placement {
                provider: "CPUExecutionProvider".into(),
                nodes: 139,
                listed: vec![]
            }]
        );
        let log = vec![
            " Node(s) placed on [QNNExecutionProvider]. Number of nodes: 1\n  QNN_123 (QNNExecutionProvider_QNN_123_0)\n".to_string(),
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2\n  Resize (up1)\n  Resize (up2)\n".to_string(),
        ];
        let p = parse_placements(&log);
        assert_eq!(p[1].provider, "CPUExecutionProvider");
        assert_eq!(
            p[1].describe(NodeFacts::default()),
            "2 nodes: Resize×2: 'up1', 'up2'"
        );
    }

    #[test]
    fn the_boundary_quantization_left_on_the_cpu_is_named_with_why_and_the_fix() {
        let (log, model, rejections) = (selfie_log(), selfie_summary(), selfie_rejections());
        let placements = parse_placements(&log);
        let facts = NodeFacts {
            model: Some(&model),
            rejections: Some(&rejections),
        };
        let cpu = CpuNodes {
            placements: &placements,
            facts,
        };
        assert_eq!(
            cpu.warning(Provider::Qnn, "selfie_w8a8.onnx").unwrap(),
            "2 nodes of selfie_w8a8.onnx run on the CPU, the rest on qnn: \
             DequantizeLinear 'mask_DequantizeLinear' (graph output), \
             QuantizeLinear 'image_q' (graph input); \
             qnn says: \"QNN EP is configured to not take DQ nodes that generate a graph output.\", \
             \"QNN EP is configured to not take Q nodes that consume a graph input.\"; \
             a model with quantized I/O runs wholly on qnn \
             (or set provider-options offload_graph_io_quantization=0)"
        );
        assert_eq!(placements[0].describe(facts), "1 compiled partition");
        // Nothing to say on the CPU, or when every node is on the provider.
        assert_eq!(cpu.warning(Provider::Cpu, "m.onnx"), None);
        let all_qnn = parse_placements(&[
            " All nodes placed on [QNNExecutionProvider]. Number of nodes: 1".to_string(),
        ]);
        let cpu = CpuNodes {
            placements: &all_qnn,
            ..cpu
        };
        assert_eq!(cpu.warning(Provider::Qnn, "m.onnx"), None);
    }

    #[test]
    fn an_inner_node_on_the_cpu_gets_no_quantized_io_advice() {
        let model = selfie_summary();
        let log = [
            " Node(s) placed on [QNNExecutionProvider]. Number of nodes: 1",
            "  QNNExecutionProvider_1_1 (QNNExecutionProvider_QNNExecutionProvider_1_1_0)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
            "  DequantizeLinear (mask_DequantizeLinear)",
            "  Sigmoid (sig)",
        ]
        .map(String::from);
        let placements = parse_placements(&log);
        let msg = CpuNodes {
            placements: &placements,
            facts: NodeFacts {
                model: Some(&model),
                rejections: None,
            },
        }
        .warning(Provider::Qnn, "m.onnx")
        .unwrap();
        assert_eq!(
            msg,
            "2 nodes of m.onnx run on the CPU, the rest on qnn: \
             DequantizeLinear 'mask_DequantizeLinear' (graph output), Sigmoid 'sig'"
        );
    }

    #[test]
    fn a_provider_that_took_nothing_gets_the_models_operators_or_says_none_were_listed() {
        let placements = parse_placements(&[
            " All nodes placed on [CPUExecutionProvider]. Number of nodes: 5".to_string(),
        ]);
        let model = selfie_summary();
        let mut model_ops = model.clone();
        for n in &model.nodes {
            *model_ops.ops.entry(n.op_type.clone()).or_default() += 1;
        }
        let cpu = CpuNodes {
            placements: &placements,
            facts: NodeFacts {
                model: Some(&model_ops),
                rejections: None,
            },
        };
        assert_eq!(
            cpu.warning(Provider::Qnn, "m.onnx").unwrap(),
            "all nodes of m.onnx run on the CPU, none on qnn: \
             the model's DequantizeLinear×1, QuantizeLinear×1, Sigmoid×1, Transpose×1"
        );
        let cpu = CpuNodes {
            facts: NodeFacts::default(),
            ..cpu
        };
        assert_eq!(
            cpu.warning(Provider::Qnn, "m.onnx").unwrap(),
            "all nodes of m.onnx run on the CPU, none on qnn: operators not listed by ONNX Runtime"
        );
    }

    #[test]
    fn many_nodes_are_grouped_by_operator_with_a_few_names_each() {
        let mut nodes: Vec<PlacedNode> = (1..=12)
            .map(|i| PlacedNode {
                op_type: "Resize".into(),
                name: format!("up{i}"),
            })
            .collect();
        for op in ["Conv", "A", "B", "C", "D", "E", "F"] {
            nodes.push(PlacedNode {
                op_type: op.into(),
                name: String::new(),
            });
        }
        assert_eq!(
            describe_nodes(&nodes, NodeFacts::default()),
            "Resize×12: 'up1', 'up2', 'up3' and 9 more; A (unnamed); B (unnamed); \
             C (unnamed); Conv (unnamed); D (unnamed); and 2 more nodes of 2 other operator types"
        );
    }
}
