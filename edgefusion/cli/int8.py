"""INT8 and TensorRT commands: quantize, build-engine (their flags and help).

``quantize`` needs onnx and onnxruntime (the 'train' extra brings onnx) but never torch;
``build-engine`` needs TensorRT and cuda-python (the 'tensorrt' extra, or JetPack). What
they run lives in :mod:`edgefusion.cli.toolchain`, the one CLI module that reaches the
toolchain (``calibration/``, ``export/``).
"""

from __future__ import annotations

import argparse
from typing import Any

from edgefusion.cli._common import add_command
from edgefusion.cli.toolchain import cmd_build_engine, cmd_quantize

QUANTIZE_HELP = """\
Add INT8 variants to a model package, calibrated with ONNX Runtime's quantization tools.

  int8      for CPUs (ONNX Runtime): QDQ, uint8 asymmetric activations, int8 weights
  int8_trt  for TensorRT: int8 symmetric activations and per-channel weights, zero
            points 0, float bias (build an engine from it with 'edgefusion build-engine')

Only Conv, MatMul and Gemm are quantized; everything else stays float, and each artifact's
calibration.<variant>.json records which nodes did, the calibration data (samples, seed,
sha256), the method and the tool versions. Calibration data is synthesized from the
package's scenario with a seed of its own; or read from --calibration-feeds, from a recorded
log's windows or a dataset's train split (--calibration-data); with --gate-data (and no
--seed) it is that dataset's train split.

Accuracy gate: FP32 and INT8 run on a held-out set (ONNX Runtime, CPU): synthesized from the
package's scenario, or the val split of a recorded dataset (--gate-data DIR, from 'edgefusion
dataset build'; how a package without a scenario is quantized). If any variant's
action accuracy drops by more than --max-drop points, nothing is written, the package is
left byte for byte as it was, and the command exits with status 2 and a drift report
(per output: max and mean |Δ|, decision agreement, FP32 vs INT8 metric). Any Q/DQ scale
that is inf, NaN or zero also fails the run.
"""

QUANTIZE_EPILOG = """examples:
  edgefusion quantize smart_home                           # both variants, MinMax, 512 samples
  edgefusion quantize packages/drv --method entropy --samples 1024
  edgefusion quantize packages/drv --variants int8 --max-drop 0.5
  edgefusion quantize packages/drv --calibration-feeds recorded.npz   # one array per input
  edgefusion quantize packages/home --gate-data data/home  # gate on its val split, calibrate on train
"""

ENGINE_HELP = """\
Build a TensorRT engine for this machine's GPU and store it in the package.

  fp32  from the FP32 ONNX
  fp16  from an FP16 ONNX converted here (inputs and outputs stay float32)
  int8  from the 'int8_trt' Q/DQ artifact (run 'edgefusion quantize PACKAGE' first)

The network is strongly typed: precision comes from the ONNX graph (no FP16/INT8 builder
flags, no implicit INT8 calibrators - TensorRT 11 removed them). The batch axis gets one
optimization profile (1 .. --max-batch, tuned for --opt-batch). The timing cache is kept
beside the engines and reused. Engines are recorded under manifest["engines"] with a key
of TensorRT version, compute capability, GPU and variant (e.g. trt10.3.0/sm87/orin/int8)
plus the sha256 of the ONNX they came from; the tensorrt backend refuses an engine built
for another TensorRT, GPU or ONNX and prints this command to rebuild it.

Needs TensorRT and cuda-python: on x86-64, pip install tensorrt cuda-python (NVIDIA's
wheels on PyPI, also on https://pypi.nvidia.com); on Jetson, TensorRT comes with JetPack
(sudo apt install nvidia-jetpack).
"""

ENGINE_EPILOG = """examples:
  edgefusion build-engine smart_home --variant fp16
  edgefusion build-engine packages/drv --variant int8 --max-batch 32 --opt-batch 8
"""


def register(sub: Any) -> None:
    sp = add_command(sub, "quantize", "Add INT8 variants (int8 for CPUs, int8_trt for TensorRT) to a model "
                                      "package, behind an accuracy gate.", cmd_quantize)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.description, sp.epilog = QUANTIZE_HELP, QUANTIZE_EPILOG
    sp.add_argument("package", help="package directory, or a built-in name: smart_home, driving")
    sp.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"),
                    help="how activation ranges are chosen: minmax (default; the full observed range), entropy "
                         "(KL-divergence threshold), percentile (clip the top 0.001%%)")
    sp.add_argument("--samples", type=int, help="calibration samples to synthesize (default 512)")
    sp.add_argument("--eval-samples", type=int, default=2000,
                    help="held-out samples for the accuracy gate (default 2000; seed = training seed + 100003; "
                         "with --gate-data: at most this many val windows)")
    sp.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                    help="largest allowed drop in action accuracy, in percentage points (default 1.0)")
    sp.add_argument("--variants", default="int8,int8_trt", help="comma-separated: int8, int8_trt (default both)")
    sp.add_argument("--seed", type=int, help="calibration seed (default: training seed + 200003)")
    sp.add_argument("--batch", type=int, default=16, help="calibration batch size (default 16)")
    sp.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for calibration and the gate "
                                                         "(default 2)")
    sp.add_argument("--calibration-feeds", metavar="FILE.npz",
                    help="calibrate on these feeds instead of synthesized data: an .npz with one array per model "
                         "input, samples along axis 0 (e.g. preprocessed recorded logs)")
    sp.add_argument("--calibration-data", metavar="LOG.mcap|DIR",
                    help="calibrate on the fusion windows of a recorded log, or on a dataset's train split (up to "
                         "--samples of them)")
    sp.add_argument("--gate-data", metavar="DIR",
                    help="run the accuracy gate on this recorded dataset's val split (up to --eval-samples windows) "
                         "instead of synthesized held-out samples; calibration defaults to its train split")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = add_command(sub, "build-engine", "Build a TensorRT engine (fp32, fp16 or int8) for this GPU and store it "
                                          "in the package, keyed by TensorRT version and GPU.", cmd_build_engine)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.description, sp.epilog = ENGINE_HELP, ENGINE_EPILOG
    sp.add_argument("package", help="package directory, or a built-in name: smart_home, driving")
    sp.add_argument("--variant", required=True, choices=("fp32", "fp16", "int8"),
                    help="engine precision: fp32, fp16 or int8 (int8 needs the int8_trt artifact)")
    sp.add_argument("--max-batch", type=int, default=16, help="largest batch the engine accepts (default 16)")
    sp.add_argument("--opt-batch", type=int, default=1, help="batch TensorRT tunes kernels for (default 1: "
                                                           "one frame per step, as the runtime runs)")
    sp.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    sp.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
