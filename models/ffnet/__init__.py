"""FFNet tooling of ffnetseg: PyTorch model (ffnet.py), ONNX export (export.py),
post-training quantization for QNN HTP (quantize.py), numerics (validate.py), latency
(bench.py), and the one-command build (build_all.sh / build_all.py). See models/README.md.

The scripts are run as files (python models/ffnet/export.py ...) and import each other from
this folder."""
