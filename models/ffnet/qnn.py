#!/usr/bin/env python3
"""Run a model on the QNN execution provider (HTP backend) from Python, and report where
ONNX Runtime placed its nodes.

    python models/ffnet/qnn.py placement MODEL.onnx [--options htp_arch=68,...]

The QNN EP is the ``onnxruntime-qnn`` 2.x wheel's plugin library
(``onnxruntime_qnn.get_library_path()``), registered with ``onnxruntime`` (1.32, the same
library version the plugin loads). On x86-64 its ``libQnnHtp.so`` is Qualcomm's HTP
*simulator*: the same op validation, graph preparation and partitioning as on a board, with
the HTP's integer arithmetic emulated on the CPU (slow: seconds per selfie frame, minutes
per FFNet frame on 2 cores).

Placement comes from ONNX Runtime's own verbose report ("Node placements", logged by
``VerifyEachNodeIsAssignedToAnEp``): QNN EP's partition counts as one (compiled) node, and
every node left to another provider is listed with its op type and name. The verbose log goes
to the C++ runtime's stderr, so ``placement()`` runs the session in a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

EP = "QNNExecutionProvider"
_registered = False


def available() -> str | None:
    """None when the QNN EP can be used here, else why not."""
    try:
        import onnxruntime  # noqa: F401
        import onnxruntime_qnn  # noqa: F401
    except ImportError as e:
        return f"onnxruntime-qnn is not installed ({e})"
    try:
        _register()
    except Exception as e:  # noqa: BLE001 (any registration failure means: not here)
        return f"the QNN plugin EP did not register: {e}"
    return None


def _register():
    global _registered
    import onnxruntime as ort
    import onnxruntime_qnn as oq

    if not _registered:
        try:
            ort.register_execution_provider_library(EP, oq.get_library_path())
        except Exception as e:  # already registered by someone else in this process
            if "already" not in str(e).lower():
                raise
        _registered = True
    devs = [d for d in ort.get_ep_devices() if d.ep_name == EP]
    if not devs:
        raise RuntimeError("QNN EP registered but it offers no device")
    return devs


def parse_options(text: str | dict | None) -> dict:
    """"k=v,k=v" (segtool's --provider-options form) or a dict -> {str: str}."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for kv in text.split(","):
        k, _, v = kv.partition("=")
        out[k.strip()] = v.strip()
    return out


def session(path: str, options=None, disable_cpu_fallback: bool = False,
            verbose: bool = False):
    """An onnxruntime InferenceSession of ``path`` on the QNN EP (HTP backend) with provider
    ``options`` ("k=v,..." or dict). ``disable_cpu_fallback``: session creation fails unless
    every node runs on QNN (ORT's session.disable_cpu_ep_fallback)."""
    import onnxruntime as ort

    devs = _register()
    opts = {"backend_type": "htp"}
    opts.update(parse_options(options))
    so = ort.SessionOptions()
    so.log_severity_level = 0 if verbose else 3
    if disable_cpu_fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.add_provider_for_devices(devs, opts)
    return ort.InferenceSession(path, so)


_PLACED = re.compile(r"(All nodes|Node\(s\)) placed on \[([^\]]+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"^\s+(\S+) \((.*)\)\s*$")
_TAG = "VerifyEachNodeIsAssignedToAnEp]"


def parse_placement(log: str) -> dict:
    """{provider: {"nodes": N, "ops": [(op type, node name), ...]}} from ORT's verbose
    "Node placements" report: one log line per provider ("Node(s) placed on [P]. Number of
    nodes: N") followed by one per node ("  OpType (name)"), each after the logger's
    "... VerifyEachNodeIsAssignedToAnEp]" prefix (or as continuation lines)."""
    out: dict = {}
    cur = None
    for line in log.splitlines():
        msg = line.split(_TAG, 1)[1] if _TAG in line else line
        if "Node placements" in msg:
            out, cur = {}, None  # the last report (the last session) wins
            continue
        m = _PLACED.search(msg)
        if m:
            cur = out.setdefault(m.group(2), {"nodes": 0, "ops": []})
            cur["nodes"] += int(m.group(3))
            continue
        n = _NODE.match(msg)
        if n and cur is not None and (_TAG in line or not line[:1].isdigit()):
            cur["ops"].append((n.group(1), n.group(2)))
        elif _TAG not in line:
            cur = None
    return out


def placement(path: str, options=None, timeout: float = 1800) -> dict:
    """Where ONNX Runtime puts ``path``'s nodes with the QNN EP (HTP) and provider ``options``.
    Returns {"qnn_nodes", "cpu_nodes", "cpu_ops": [[op, name], ...], "by_provider",
    "wholly_on_qnn", "error"}. Runs in a child process (the verbose log is on C++ stderr);
    then, if everything is on QNN, checks that a session with CPU fallback disabled is made."""
    cmd = [sys.executable, os.path.abspath(__file__), "_session", path,
           "--options", json.dumps(parse_options(options))]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    by = parse_placement(p.stderr + p.stdout)
    r = {"options": parse_options(options), "by_provider": by,
         "qnn_nodes": by.get(EP, {}).get("nodes", 0),
         "cpu_nodes": sum(v["nodes"] for k, v in by.items() if k != EP),
         "cpu_ops": [list(o) for k, v in by.items() if k != EP for o in v["ops"]],
         "error": None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1][-500:]}
    r["wholly_on_qnn"] = p.returncode == 0 and r["qnn_nodes"] > 0 and r["cpu_nodes"] == 0
    if r["wholly_on_qnn"]:
        cmd2 = cmd + ["--no-fallback"]
        p2 = subprocess.run(cmd2, capture_output=True, text=True, timeout=timeout, check=False)
        r["no_fallback_session"] = p2.returncode == 0
        if p2.returncode != 0:
            r["wholly_on_qnn"] = False
            r["error"] = (p2.stderr.strip().splitlines() or ["?"])[-1][-500:]
    return r


def describe(r: dict) -> str:
    """"1 node on QNN (its partition), 2 on the CPU: QuantizeLinear 'x', ..." in words."""
    if r.get("error") and not r["qnn_nodes"]:
        return f"failed: {r['error']}"
    s = f"{r['qnn_nodes']} on QNN"
    if r["cpu_nodes"]:
        s += f", {r['cpu_nodes']} on the CPU: " + ", ".join(f"{op} '{n}'" for op, n in r["cpu_ops"])
    else:
        s += ", none on the CPU"
    return s


def _child(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--options", default="{}")
    ap.add_argument("--no-fallback", action="store_true")
    a = ap.parse_args(argv)
    s = session(a.model, json.loads(a.options), disable_cpu_fallback=a.no_fallback,
                verbose=not a.no_fallback)
    print(json.dumps({"providers": s.get_providers()}))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_session":
        return _child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("placement",))
    ap.add_argument("model")
    ap.add_argument("--options", default="", help="QNN provider options k=v,... (e.g. htp_arch=68)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    why = available()
    if why:
        raise SystemExit(why)
    r = placement(a.model, a.options)
    print(json.dumps(r) if a.json else f"{a.model}: {describe(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
