#!/usr/bin/env bash
# The GPU check, one run (under 8 minutes on a desktop or data-centre GPU):
#   1. the GPU, TensorRT and a CUDA binding are there (else it stops at once, saying what is missing);
#   2. fp16 and int8 TensorRT engines for both built-in packages (on copies; the shipped ones stay as they are);
#   3. pytest -m gpu (real engines through the backend checks);
#   4. TensorRT against ONNX Runtime on the CPU: max |delta logit| and argmax agreement per engine;
#   5. batch 1 and 8 latency: TensorRT fp16/int8, ONNX Runtime CUDA (onnxruntime-gpu), eager torch CUDA,
#      ONNX Runtime CPU for scale;
#   6. everything into OUT/gpu_check.json (steps and their seconds, parity, latency, what was skipped and why).
#
# Needs: an NVIDIA GPU with its driver, TensorRT (pip on x86-64, JetPack on Jetson), cuda-python or pycuda,
# torch with CUDA for the eager comparison, onnxruntime-gpu for the ONNX Runtime CUDA row (both optional:
# a missing one is a skipped row, with the reason).
#
# Usage:  bench/gpu_check.sh [OUT_DIR]             (default bench/out/gpu_check)
#   PYTHON=.venv/bin/python  SAMPLES=512  ITERS=200  bench/gpu_check.sh
# Exit status: 0 all good, 1 a check failed (parity, pytest, a build), 2 this machine cannot run it.
# GPU_CHECK_SELFTEST=1 runs steps 4-6 on the CPU with ONNX Runtime standing in for TensorRT, to test the
# script itself; its JSON says "selftest": true and proves nothing about a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/gpu_check}
PY=${PYTHON:-python3}
SELFTEST=${GPU_CHECK_SELFTEST:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" SAMPLES=${SAMPLES:-512} ITERS=${ITERS:-200} SELFTEST
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export STEPS="$WORK/steps.tsv"
: >"$STEPS"
T0=$(date +%s)

say() { echo "== gpu_check: $*" >&2; }
cannot() { echo "gpu_check: cannot run here: $*" >&2; exit 2; }
step() {  # step NAME COMMAND...: run it, log it, record its seconds and status
  local name=$1 t rc=0
  shift
  say "$name"
  t=$(date +%s)
  "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$(($(date +%s) - t))" "$rc" >>"$STEPS"
  tail -n 3 "$WORK/$name.log" >&2
  cp "$WORK/$name.log" "$OUT/$name.log"
  return 0
}

mkdir -p "$OUT"
if [ "$SELFTEST" != 1 ]; then
  if ! { nvidia-smi -L 2>/dev/null | grep -q GPU || [ -e /etc/nv_tegra_release ]; }; then
    cannot "no NVIDIA GPU (nvidia-smi lists none and this is not a Jetson). This check needs one;" \
      "'edgefusion doctor' says what this machine has"
  fi
  "$PY" - <<'PY' || cannot "TensorRT or CUDA is not usable (above); 'edgefusion doctor' says what to install"
import sys
from edgefusion.backends.tensorrt import import_tensorrt, load_cuda
try:
    trt = import_tensorrt("bench/gpu_check.sh")
    name, cc = load_cuda(0, "bench/gpu_check.sh").device()
except Exception as exc:  # missing module, no device, driver mismatch
    sys.exit(f"gpu_check: {exc}")
print(f"== gpu_check: TensorRT {trt.__version__} on {name} (sm{cc[0]}{cc[1]})", file=sys.stderr)
PY
fi

export PKGS="$WORK/packages"
mkdir -p "$PKGS"
for p in smart_home driving; do cp -r "edgefusion/models/$p" "$PKGS/$p"; done
if [ "$SELFTEST" != 1 ]; then
  for p in smart_home driving; do
    for v in fp16 int8; do
      step "build-$p-$v" "$PY" -m edgefusion build-engine "$PKGS/$p" --variant "$v" --max-batch 8
    done
  done
  step pytest-gpu "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_tensorrt.py
fi

say "parity and latency"
rc=0
"$PY" - "$OUT/gpu_check.json" <<'PY' || rc=$?
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgefusion.backends import open_backend
from edgefusion.benchmark.model_only import model_only
from edgefusion.benchmark.report import machine_facts
from edgefusion.benchmark.runner import BenchConfig
from edgefusion.errors import EdgeFusionError
from edgefusion.histogram import LatencyHistogram
from edgefusion.package import load_package
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import generate_samples, get_scenario

SELFTEST = os.environ["SELFTEST"] == "1"
SAMPLES, ITERS = int(os.environ["SAMPLES"]), int(os.environ["ITERS"])
# engine variant -> (the ONNX artifact it is built from, ONNX Runtime's reference, max |delta|, min agreement);
# the same bounds as tests/test_tensorrt.py
PARITY = {"fp16": ("fp32", 0.25, 0.95), "int8": ("int8_trt", 2.0, 0.90)}
out = {"selftest": SELFTEST, "machine": machine_facts(), "samples": SAMPLES, "iters": ITERS, "steps": [],
       "parity": [], "latency": [], "skipped": [], "failed": []}
for line in Path(os.environ["STEPS"]).read_text().splitlines():
    name, seconds, rc = line.split("\t")
    out["steps"].append({"step": name, "seconds": int(seconds), "ok": rc == "0"})
    if rc != "0":
        out["failed"].append(f"{name} (exit {rc}; see {name}.log)")
    elif name == "pytest-gpu":  # every gpu test skipped is a failure here, not a pass
        summary = (Path(os.environ["STEPS"]).parent / f"{name}.log").read_text().strip().splitlines()[-1:]
        out["pytest_gpu"] = summary[0] if summary else ""
        if " passed" not in out["pytest_gpu"] or "skipped" in out["pytest_gpu"]:
            out["failed"].append(f"pytest -m gpu: {out['pytest_gpu'] or 'no output'}")


def engine(variant):
    """The backend and variant standing for a TensorRT engine (ONNX Runtime on the CPU in a selftest)."""
    return ("onnxruntime", PARITY[variant][0]) if SELFTEST else ("tensorrt", variant)


def run_all(backend, pkg, variant, feeds_list):
    with open_backend(backend, pkg, variant=variant, threads=2) as be:
        outs = [be.infer(f) for f in feeds_list]
        return str(be.info), {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def torch_rows(pkg, windows, device):
    import torch

    from edgefusion.dataset import INPUT_ORDER
    from export.train import load_checkpoint

    model = load_checkpoint(pkg.file(pkg.manifest.sources["checkpoint"]))[0].to(device).eval()
    rows = []
    for b in (1, 8):
        feeds, _ = pkg.feed_builder().build([windows[i % len(windows)] for i in range(b)])

        def call(feeds=feeds):
            with torch.inference_mode():  # from numpy and back, like every backend; .cpu() waits for the GPU
                return [o.cpu().numpy() for o in model(*(torch.from_numpy(feeds[k]).to(device) for k in INPUT_ORDER))]

        for _ in range(20):
            call()
        h = LatencyHistogram()
        for _ in range(ITERS):
            t0 = time.perf_counter_ns()
            call()
            h.record(time.perf_counter_ns() - t0)
        s = h.summary_ms()
        rows.append({"config": f"torch-{device}:fp32", "backend": f"torch eager {device} (torch {torch.__version__})",
                     "batch": b, "latency_ms": s, "samples_per_s": round(b / (s["p50"] / 1e3), 1)})
    return rows


for name in ("smart_home", "driving"):
    pkg = load_package(Path(os.environ["PKGS"]) / name)
    scenario = get_scenario(pkg.manifest.scenario)
    windows = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)
               for s in generate_samples(scenario, SAMPLES, seed=11)]
    builder = pkg.feed_builder()
    feeds_list = [builder.build(windows[i:i + 8])[0] for i in range(0, len(windows), 8)]
    for variant, (reference, max_delta, min_agree) in PARITY.items():
        backend, bvariant = engine(variant)
        try:
            ref_info, ref = run_all("onnxruntime", pkg, reference, feeds_list)
            info, got = run_all(backend, pkg, bvariant, feeds_list)
        except EdgeFusionError as exc:
            out["failed"].append(f"{name} {variant}: {exc}")
            continue
        delta = {k: round(float(np.abs(got[k] - ref[k]).max()), 5) for k in ref}
        action = float(np.mean(got["action_logits"].argmax(1) == ref["action_logits"].argmax(1)))
        events = float(np.mean((got["event_logits"] > 0) == (ref["event_logits"] > 0)))
        ok = max(delta.values()) < max_delta and action >= min_agree
        out["parity"].append({"package": name, "engine": variant, "backend": info, "reference": ref_info,
                              "samples": SAMPLES, "max_abs_delta": delta, "action_argmax_agreement": round(action, 4),
                              "event_decision_agreement": round(events, 4), "bounds": [max_delta, min_agree], "ok": ok})
        if not ok:
            out["failed"].append(f"{name} {variant}: max |delta| {delta}, action agreement {action:.3f}")
    ort_gpu = "onnxruntime" if SELFTEST else "onnxruntime-cuda"
    configs = [*(BenchConfig(*engine(v), 1) for v in PARITY), BenchConfig(ort_gpu, "fp32", 2),
               BenchConfig("onnxruntime", "fp32", 2)]
    for cfg in configs:
        try:
            out["latency"] += [dict(r, package=name) for r in model_only(pkg, cfg, windows[:64], iters=ITERS)]
        except EdgeFusionError as exc:
            out["skipped"].append({"package": name, "config": cfg.label, "why": str(exc)})
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() and not SELFTEST else "cpu"
        if device == "cpu" and not SELFTEST:
            raise RuntimeError(f"torch {torch.__version__} sees no CUDA device (a CPU build?)")
        out["latency"] += [dict(r, package=name) for r in torch_rows(pkg, windows, device)]
    except (ImportError, RuntimeError, EdgeFusionError) as exc:
        out["skipped"].append({"package": name, "config": "torch-cuda:fp32", "why": f"{type(exc).__name__}: {exc}"})

Path(sys.argv[1]).write_text(json.dumps(out, indent=2) + "\n")
for p in out["parity"]:
    print(f"  {p['package']:<11} {p['engine']:<5} vs ONNX Runtime CPU {PARITY[p['engine']][0]:<8} max|d| "
          f"{max(p['max_abs_delta'].values()):.4f}  action agree {p['action_argmax_agreement']:.3f}  "
          f"{'ok' if p['ok'] else 'FAILED'}", file=sys.stderr)
for r in out["latency"]:
    print(f"  {r['package']:<11} {r['config']:<24} batch {r['batch']}  p50 {r['latency_ms']['p50']:.3f} ms  "
          f"p99 {r['latency_ms']['p99']:.3f} ms", file=sys.stderr)
for s in out["skipped"]:
    print(f"  skipped {s['package']} {s['config']}: {s['why']}", file=sys.stderr)
for f in out["failed"]:
    print(f"  FAILED {f}", file=sys.stderr)
sys.exit(1 if out["failed"] else 0)
PY
say "$([ $rc = 0 ] && echo OK || echo FAILED) in $(($(date +%s) - T0)) s; wrote $OUT/gpu_check.json"
exit $rc
