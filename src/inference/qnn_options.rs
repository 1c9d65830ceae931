//! Checks `provider-options` meant for the QNN execution provider (built in or plugin)
//! against what ONNX Runtime documents: the provider itself only logs a bad value and
//! carries on with its default, so a typo would silently change what runs.

use crate::error::{Error, Result};

/// What a QNN provider option takes.
#[derive(Debug, Clone, Copy)]
enum QnnValue {
    OneOf(&'static [&'static str]),
    /// `0` or `1`.
    Flag,
    /// A whole number ≥ 0, in the unit given.
    Count(&'static str),
    /// A path or free text; only an empty value is refused.
    Text(&'static str),
    /// A numeric SoC id, or a chip name.
    SocModel,
    /// An HTP architecture number.
    HtpArch,
}

/// The QNN EP's provider options as ONNX Runtime documents them (QNN-ExecutionProvider.md of
/// github.com/onnxruntime/onnxruntime-qnn), with the values it documents. The keys were also
/// found in the onnxruntime-qnn 2.7.0 plugin binary; see docs/qnn/boards.md §7.1.
const QNN_OPTIONS: &[(&str, QnnValue)] = &[
    // The EP's own error message lists genie too.
    (
        "backend_type",
        QnnValue::OneOf(&["htp", "cpu", "gpu", "saver", "ir", "genie"]),
    ),
    ("backend_path", QnnValue::Text("a path to libQnnHtp.so")),
    (
        "htp_performance_mode",
        QnnValue::OneOf(&[
            "burst",
            "balanced",
            "default",
            "high_performance",
            "high_power_saver",
            "low_balanced",
            "extreme_power_saver",
            "low_power_saver",
            "power_saver",
            "sustained_high_performance",
        ]),
    ),
    (
        "htp_graph_finalization_optimization_mode",
        QnnValue::OneOf(&["0", "1", "2", "3"]),
    ),
    ("enable_htp_fp16_precision", QnnValue::Flag),
    ("vtcm_mb", QnnValue::Count("megabytes, 0 = not set")),
    (
        "qnn_context_priority",
        QnnValue::OneOf(&["low", "normal", "normal_high", "high"]),
    ),
    (
        "profiling_level",
        QnnValue::OneOf(&["off", "basic", "detailed", "optrace"]),
    ),
    ("profiling_file_path", QnnValue::Text("a CSV file path")),
    ("offload_graph_io_quantization", QnnValue::Flag),
    ("rpc_control_latency", QnnValue::Count("microseconds")),
    ("soc_model", QnnValue::SocModel),
    ("htp_arch", QnnValue::HtpArch),
    ("device_id", QnnValue::Count("a device number")),
    ("enable_htp_spill_fill_buffer", QnnValue::Flag),
    ("qnn_saver_path", QnnValue::Text("a path to libQnnSaver.so")),
    ("enable_vtcm_backup_buffer_sharing", QnnValue::Flag),
    ("htp_share_resource_optimization", QnnValue::Flag),
    ("enable_htp_shared_memory_allocator", QnnValue::Flag),
    ("enable_block_quant_weight_optimization", QnnValue::Flag),
    ("htp_bf16_enable", QnnValue::Flag),
    ("extended_udma", QnnValue::Flag),
    ("enable_htp_prepare_only", QnnValue::Flag),
    ("disable_file_mapped_weights", QnnValue::Flag),
    ("skip_qnn_version_check", QnnValue::Flag),
    ("num_graph_prepare_threads", QnnValue::Count("threads")),
    (
        "op_packages",
        QnnValue::Text("<OpType>:<PackagePath>:<InterfaceSymbolName>[:<Target>]"),
    ),
    ("dump_json_qnn_graph", QnnValue::Flag),
    ("json_qnn_graph_dir", QnnValue::Text("a folder")),
    ("dump_qnn_ir_dlc", QnnValue::Flag),
    ("dump_qnn_ir_dlc_dir", QnnValue::Text("a folder")),
    (
        "qnn_ir_backend_path",
        QnnValue::Text("a path to libQnnIr.so"),
    ),
    ("enable_framework_op_trace", QnnValue::Flag),
    ("framework_op_trace_dir", QnnValue::Text("a folder")),
    (
        "genie_log_level",
        QnnValue::OneOf(&["error", "warn", "info", "verbose"]),
    ),
];

/// Keys the onnxruntime-qnn 2.7.0 plugin reads (its verbose log says "User specified
/// ep.qnnexecutionprovider.<key>") that ONNX Runtime does not document: passed on unchecked.
const QNN_UNDOCUMENTED_OPTIONS: &[&str] = &[
    "skip_backend_op_validation",
    "enable_htp_fp16_clamp_overflow",
    "enable_htp_graph_splitting",
    "htp_graph_splitting_num_prepare_threads",
    "enable_htp_monolithic_lstm",
    "enable_htp_prepare_and_load",
    "htp_reused_io_limit_mb",
    "dump_qnn_ep_input_graph",
    "dump_qnn_ep_input_graph_dir",
    "enable_dx12_shared_memory_allocator",
];

/// HTP architectures the onnxruntime-qnn 2.7.0 plugin accepts (it ignores others, with a log
/// line only); ONNX Runtime documents 0, 68, 69, 73 and 75 and points to QAIRT for more.
const QNN_HTP_ARCHS: &[&str] = &["0", "68", "69", "73", "75", "79", "81"];

/// Chip names the onnxruntime-qnn 2.7.0 plugin maps to a SoC id (tried one by one on the
/// simulator); it ignores other names (QCS6490, QCS8550, …) with a log line only.
const QNN_SOC_NAMES: &[&str] = &[
    "SM8350", "SM8450", "SM8475", "SM8550", "SM8635", "SM8650", "SM7675", "SM8750", "SM8850",
    "SC8380XP", "SC8480XP",
];

/// Edit distance (insertions, deletions, substitutions) between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word` (ignoring case), if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 5).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::Config(format!("provider-options: {msg}")))
}

/// Checks `provider-options` meant for the QNN execution provider (built in or plugin).
/// A documented key with a value outside its documented values is an error that names the
/// key and the valid values. An unknown key is passed on as is (newer EPs add options) with a
/// warning that names the documented key it is probably a typo of. Returns the warnings.
pub fn check(options: &[(String, String)]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (i, (key, value)) in options.iter().enumerate() {
        if let Some((_, earlier)) = options[..i].iter().find(|(k, _)| k == key) {
            return bad(format!(
                "{key} is given twice ({key}={earlier} and {key}={value}); keep one"
            ));
        }
        let warning = match QNN_OPTIONS.iter().find(|(k, _)| k == key) {
            Some((_, kind)) => check_value(key, value, *kind)?,
            None => unknown_key_warning(key),
        };
        warnings.extend(warning);
    }
    check_combinations(options)?;
    Ok(warnings)
}

/// The warning for a key that ONNX Runtime does not document (none for the keys the plugin
/// is known to read), with the documented key it is probably a typo of.
fn unknown_key_warning(key: &str) -> Option<String> {
    if QNN_UNDOCUMENTED_OPTIONS.contains(&key) {
        return None;
    }
    let known = QNN_OPTIONS
        .iter()
        .map(|(k, _)| *k)
        .chain(QNN_UNDOCUMENTED_OPTIONS.iter().copied());
    let hint = closest(key, known)
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    Some(format!(
        "provider-options: {key} is not a QNN option ONNX Runtime documents{hint}; passed as is"
    ))
}

/// Checks the value of a documented key: an error for a value outside what it takes, a
/// warning for a value the provider may ignore.
fn check_value(key: &str, value: &str, kind: QnnValue) -> Result<Option<String>> {
    let one_of = |valid: &[&str]| {
        let hint = closest(value, valid.iter().copied())
            .map(|v| format!(" (did you mean {v}?)"))
            .unwrap_or_default();
        bad(format!(
            "{key}={value} is not valid{hint}; {key} takes one of: {}",
            valid.join(", ")
        ))
    };
    let is_number = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match kind {
        QnnValue::OneOf(valid) if !valid.contains(&value) => one_of(valid),
        QnnValue::Flag if value != "0" && value != "1" => one_of(&["0", "1"]),
        QnnValue::Count(unit) if !is_number || value.parse::<u64>().is_err() => bad(format!(
            "{key}={value} is not valid; {key} takes a whole number ({unit})"
        )),
        QnnValue::Text(what) if value.is_empty() => {
            bad(format!("{key} is empty; {key} takes {what}"))
        }
        QnnValue::HtpArch => check_htp_arch(key, value, is_number),
        QnnValue::SocModel if !is_number => check_soc_name(key, value),
        _ => Ok(None),
    }
}

fn check_htp_arch(key: &str, value: &str, is_number: bool) -> Result<Option<String>> {
    let archs = QNN_HTP_ARCHS.join(", ");
    if !is_number {
        return bad(format!(
            "{key}={value} is not valid; {key} takes the HTP architecture as a number \
             (one of {archs}; e.g. 68 for v68)"
        ));
    }
    Ok((!QNN_HTP_ARCHS.contains(&value)).then(|| {
        format!(
            "provider-options: {key}={value} is not an HTP architecture the \
             onnxruntime-qnn 2.7 plugin knows ({archs}); a newer one may, an older one ignores \
             it; passed as is"
        )
    }))
}

/// A SoC given by name (a numeric id passes as is).
fn check_soc_name(key: &str, value: &str) -> Result<Option<String>> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return bad(format!(
            "{key}={value} is not valid; {key} takes the numeric SoC id (as QAIRT lists it) \
             or a chip name such as SM8550"
        ));
    }
    Ok(
        (!QNN_SOC_NAMES.iter().any(|n| n.eq_ignore_ascii_case(value))).then(|| {
            format!(
                "provider-options: {key}={value} is not a chip name the onnxruntime-qnn 2.7 \
             plugin knows ({}), and it ignores names it does not know; give the numeric \
             SoC id instead",
                QNN_SOC_NAMES.join(", ")
            )
        }),
    )
}

/// Options that are valid one by one but not together, or not for ffnetinfer.
fn check_combinations(options: &[(String, String)]) -> Result<()> {
    let value_of = |key: &str| {
        options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if let (Some(t), Some(p)) = (value_of("backend_type"), value_of("backend_path")) {
        return bad(format!(
            "backend_type={t} and backend_path={p} exclude each other (the QNN EP refuses to \
             start); give one"
        ));
    }
    if value_of("enable_htp_prepare_only") == Some("1") {
        return bad(
            "enable_htp_prepare_only=1 makes a session that compiles the model but never runs \
             it, which ffnetinfer cannot use; use context-cache to compile once instead"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::parse_provider_options;

    fn qnn(options: &str) -> Result<Vec<String>> {
        check(&parse_provider_options(options).unwrap())
    }

    fn qnn_error(options: &str) -> String {
        match qnn(options) {
            Err(e @ Error::Config(_)) => e.to_string(),
            other => panic!("{options}: expected a setting error, got {other:?}"),
        }
    }

    #[test]
    fn qnn_options_with_documented_values_pass_without_warnings() {
        let good = "backend_type=htp,htp_performance_mode=sustained_high_performance,\
                    enable_htp_fp16_precision=0,vtcm_mb=8,qnn_context_priority=normal_high,\
                    profiling_level=detailed,profiling_file_path=/tmp/q.csv,\
                    offload_graph_io_quantization=0,htp_graph_finalization_optimization_mode=3,\
                    soc_model=60,htp_arch=73,device_id=0,rpc_control_latency=100,\
                    enable_htp_spill_fill_buffer=1,qnn_saver_path=libQnnSaver.so";
        assert_eq!(qnn(good).unwrap(), Vec::<String>::new());
        for (key, kind) in QNN_OPTIONS {
            let value = match kind {
                QnnValue::OneOf(v) => v[v.len() - 1],
                QnnValue::Flag => "1",
                QnnValue::Count(_) | QnnValue::SocModel | QnnValue::HtpArch => "0",
                QnnValue::Text(_) => "/tmp/x",
            };
            if *key == "enable_htp_prepare_only" || *key == "backend_path" {
                continue;
            }
            assert_eq!(
                qnn(&format!("{key}={value}")).unwrap(),
                Vec::<String>::new()
            );
        }
        assert!(qnn("soc_model=sm8550").unwrap().is_empty());
        assert!(
            qnn("backend_path=/opt/qnn/libQnnHtp.so")
                .unwrap()
                .is_empty()
        );
        // Read by the 2.7 plugin, undocumented: no warning, no check.
        assert!(qnn("skip_backend_op_validation=1").unwrap().is_empty());
    }

    #[test]
    fn a_bad_qnn_option_value_is_an_error_naming_the_key_and_the_valid_values() {
        let e = qnn_error("htp_performance_mode=fast");
        assert!(
            e.contains("htp_performance_mode=fast is not valid")
                && e.contains("burst, balanced, default, high_performance")
                && e.contains("sustained_high_performance")
                && !e.contains("did you mean"),
            "{e}"
        );
        let e = qnn_error("htp_performance_mode=brust");
        assert!(e.contains("(did you mean burst?)"), "{e}");
        let e = qnn_error("backend_type=npu");
        assert!(
            e.contains("backend_type=npu") && e.contains("htp, cpu, gpu"),
            "{e}"
        );
        let e = qnn_error("enable_htp_fp16_precision=true");
        assert!(e.contains("takes one of: 0, 1"), "{e}");
        let e = qnn_error("vtcm_mb=8MB");
        assert!(
            e.contains("vtcm_mb=8MB is not valid") && e.contains("whole number (megabytes"),
            "{e}"
        );
        assert!(qnn_error("vtcm_mb=-1").contains("whole number"));
        let e = qnn_error("qnn_context_priority=highest");
        assert!(e.contains("low, normal, normal_high, high"), "{e}");
        let e = qnn_error("profiling_level=on");
        assert!(e.contains("off, basic, detailed, optrace"), "{e}");
        let e = qnn_error("htp_graph_finalization_optimization_mode=4");
        assert!(e.contains("0, 1, 2, 3"), "{e}");
        let e = qnn_error("htp_arch=v73");
        assert!(e.contains("as a number") && e.contains("68, 69, 73"), "{e}");
        let e = qnn_error("soc_model=SM 8550");
        assert!(e.contains("numeric SoC id"), "{e}");
        let e = qnn_error("profiling_file_path=");
        assert!(e.contains("profiling_file_path is empty"), "{e}");
        let e = qnn_error("backend_type=htp,backend_path=libQnnHtp.so");
        assert!(e.contains("exclude each other"), "{e}");
        let e = qnn_error("vtcm_mb=4,vtcm_mb=8");
        assert!(e.contains("given twice"), "{e}");
        let e = qnn_error("enable_htp_prepare_only=1");
        assert!(e.contains("context-cache"), "{e}");
        assert!(e.starts_with("setting: provider-options: "), "{e}");
    }

    #[test]
    fn an_unknown_qnn_option_is_a_warning_that_suggests_the_closest_key() {
        assert_eq!(
            qnn("htp_perfomance_mode=burst").unwrap(),
            vec![
                "provider-options: htp_perfomance_mode is not a QNN option ONNX Runtime documents \
                 (did you mean htp_performance_mode?); passed as is"
                    .to_string()
            ]
        );
        for (typo, meant) in [
            ("backend-type", "backend_type"),
            ("VTCM_MB", "vtcm_mb"),
            ("enable_htp_fp16_precission", "enable_htp_fp16_precision"),
            ("qnn_context_priorty", "qnn_context_priority"),
            (
                "offload_graph_io_quantisation",
                "offload_graph_io_quantization",
            ),
        ] {
            let w = qnn(&format!("{typo}=1")).unwrap();
            assert!(
                w.len() == 1 && w[0].contains(&format!("(did you mean {meant}?)")),
                "{typo}: {w:?}"
            );
        }
        // Nothing close: no guess.
        let w = qnn("some_future_option=1").unwrap();
        assert!(
            w.len() == 1 && w[0].contains("some_future_option") && !w[0].contains("did you mean"),
            "{w:?}"
        );
        // Values the 2.7 plugin does not know: passed, with a warning.
        let w = qnn("htp_arch=85").unwrap();
        assert!(w.len() == 1 && w[0].contains("htp_arch=85"), "{w:?}");
        let w = qnn("soc_model=QCS6490").unwrap();
        assert!(
            w.len() == 1 && w[0].contains("numeric SoC id") && w[0].contains("SM8550"),
            "{w:?}"
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("burst", "burst"), 0);
        assert_eq!(edit_distance("brust", "burst"), 2);
        assert_eq!(
            edit_distance("htp_perfomance_mode", "htp_performance_mode"),
            1
        );
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("fast", ["burst", "balanced"]), None);
    }
}
