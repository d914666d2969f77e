"""TensorRT: engine keys and selection (no GPU needed), install hints, FP16 ONNX, and GPU tests.

Tests marked ``gpu`` build real engines and run the backend checks against ONNX Runtime;
they skip, with the reason, where TensorRT or an NVIDIA GPU is missing. The runner itself
runs without a GPU, on fake TensorRT and CUDA modules, in test_tensorrt_runner.py.
"""

import copy
import subprocess
import sys
import time

import numpy as np
import pytest

from edgefusion import FeedError, FusionWindow, load_package, open_backend
from edgefusion.backends.tensorrt import Machine, engine_key, select_engine, trt_version
from edgefusion.errors import BackendError, MissingArtifactError, MissingDependencyError, PackageError
from edgefusion.package import Manifest, ModelPackage
from edgefusion.scenarios import generate_samples, get_scenario

ORIN = Machine("10.3.0", (8, 7), "Orin")


def _with_engine(pkg, machine, variant="int8", onnx_sha=None, **override):
    """A copy of ``pkg`` whose manifest records one engine built on ``machine`` (metadata only)."""
    raw = copy.deepcopy(pkg.manifest.raw)
    arts = raw["artifacts"]
    source = "int8_trt" if variant == "int8" else "fp32"
    arts.setdefault(source, dict(arts["fp32"], path="model.int8_trt.onnx", sha256="a" * 64))
    entry = {"path": f"engines/{engine_key(machine, variant).replace('/', '_')}.engine", "sha256": "b" * 64,
             "variant": variant, "onnx_variant": source, "onnx_sha256": onnx_sha or arts[source]["sha256"],
             "tensorrt": machine.tensorrt, "compute_capability": list(machine.compute_capability),
             "gpu": machine.gpu, **override}
    raw["engines"] = {engine_key(machine, variant): entry}
    return ModelPackage(pkg.path, Manifest.parse(raw, "test manifest"))


@pytest.fixture
def pkg(pkg_copy):
    return load_package(pkg_copy)


def test_engine_key_names_tensorrt_version_compute_capability_gpu_and_variant():
    assert engine_key(ORIN, "int8") == "trt10.3.0/sm87/orin/int8"
    assert engine_key(Machine("11.1.0", (12, 0), "NVIDIA GeForce RTX 5090"), "fp16") == \
        "trt11.1.0/sm120/nvidia-geforce-rtx-5090/fp16"
    assert trt_version("10.3.0.30") == "10.3.0" and trt_version("11.1") == "11.1.0"


def test_the_engine_recorded_for_this_machine_is_selected(pkg):
    p = _with_engine(pkg, ORIN)
    key, entry = select_engine(p, "int8", ORIN)
    assert key == "trt10.3.0/sm87/orin/int8" and entry.meta["onnx_variant"] == "int8_trt"


@pytest.mark.parametrize("machine", [Machine("10.7.0", (8, 7), "Orin"), Machine("10.3.0", (8, 6), "Orin")],
                         ids=["other-tensorrt", "other-compute-capability"])
def test_an_engine_for_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(pkg, machine):
    p = _with_engine(pkg, machine)
    with pytest.raises(MissingArtifactError) as exc:
        select_engine(p, "int8", ORIN)
    msg = str(exc.value)
    assert f"it holds int8 engines for {engine_key(machine, 'int8')} only" in msg
    assert "expected key trt10.3.0/sm87/orin/int8" in msg and "never builds one silently" in msg
    assert msg.endswith(f"Build it here with: edgefusion build-engine {pkg.path} --variant int8")


def test_a_stale_engine_is_refused_when_the_onnx_changed(pkg):
    p = _with_engine(pkg, ORIN, onnx_sha="c" * 64)
    with pytest.raises(MissingArtifactError, match=r"the engine is stale\. Rebuild it with: edgefusion build-engine"):
        select_engine(p, "int8", ORIN)


def test_no_engine_and_hand_edited_entries_are_refused(pkg):
    with pytest.raises(MissingArtifactError, match=r"it holds no fp16 engine\. .* --variant fp16$"):
        select_engine(pkg, "fp16", ORIN)
    p = _with_engine(pkg, ORIN, tensorrt="10.7.0")
    with pytest.raises(PackageError, match="contradicts its key"):
        select_engine(p, "int8", ORIN)
    with pytest.raises(BackendError, match="variants fp32, fp16, int8; got 'int4'"):
        select_engine(pkg, "int4", ORIN)


def test_tensorrt_backend_without_tensorrt_names_the_extra_and_jetpack(pkg, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(MissingDependencyError) as exc:
        open_backend("tensorrt", pkg, variant="fp16")
    msg = str(exc.value)
    assert "pip install 'edgefusion[tensorrt]'" in msg and "pip install tensorrt cuda-python" in msg
    assert "JetPack" in msg and "pypi.nvidia.com" in msg


BLOCK_TENSORRT = """
import importlib.abc, sys
class NoTensorRT(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorrt" or name.startswith("tensorrt."):
            raise ImportError("tensorrt is blocked in this test")
sys.meta_path.insert(0, NoTensorRT())
from edgefusion.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_build_engine_without_tensorrt_says_how_to_get_it(pkg_copy):
    p = subprocess.run([sys.executable, "-c", BLOCK_TENSORRT, "build-engine", str(pkg_copy), "--variant", "fp16"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: edgefusion build-engine needs the Python module 'tensorrt'")
    for hint in ("pip install tensorrt cuda-python", "https://pypi.nvidia.com", "sudo apt install nvidia-jetpack"):
        assert hint in p.stderr
    assert "Traceback" not in p.stderr


def test_int8_engine_needs_the_trt_artifact_first(pkg_copy):
    import json

    from export.tensorrt_build import BuildConfig, build_engine

    manifest = json.loads((pkg_copy / "manifest.json").read_text())  # a package not quantized yet
    manifest["artifacts"].pop("int8_trt", None)
    (pkg_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MissingArtifactError, match=r"no 'int8_trt' artifact.*quantize .* --variants int8_trt"):
        build_engine(pkg_copy, BuildConfig(variant="int8"))


def test_fp16_onnx_for_tensorrt_keeps_float32_io_and_the_decisions(pkg, tmp_path):
    import onnx
    import onnxruntime as ort

    from export.tensorrt_build import convert_fp16

    dst = tmp_path / "model.fp16.onnx"
    settings = convert_fp16(pkg.artifact("fp32"), dst)
    assert settings["keep_io_types"] is True
    graph = onnx.load(str(dst)).graph
    assert {i.type.tensor_type.elem_type for i in graph.input} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    wins = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)
            for s in generate_samples(get_scenario("smart_home"), 32, seed=4)]
    feeds = pkg.feed_builder().build(wins)[0]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(str(pkg.artifact("fp32")), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    half = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert half[1].dtype == np.float32
    assert np.abs(ref[1] - half[1]).max() < 0.1 and np.mean(ref[1].argmax(1) == half[1].argmax(1)) >= 0.95


# --- GPU: real engines, the backend checks, and a comparison with ONNX Runtime -----------------------------

def _gpu_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"TensorRT is not installed ({exc})"
    try:
        from edgefusion.backends.tensorrt import load_cuda

        load_cuda(0, "the gpu tests").device()
    except Exception as exc:  # no driver, no device, no cuda-python
        return f"no usable NVIDIA GPU ({exc})"
    return None


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    reason = _gpu_reason()
    if reason:
        pytest.skip(reason)
    import shutil

    from calibration.quantize import QuantizeConfig, quantize_package
    from edgefusion.package import BUILTIN_DIR
    from export.tensorrt_build import BuildConfig, build_engine

    dst = tmp_path_factory.mktemp("trt") / "pkg"
    shutil.copytree(BUILTIN_DIR / "smart_home", dst)
    quantize_package(dst, QuantizeConfig(samples=64, eval_samples=256, max_drop_points=3.0))
    for v in ("fp32", "fp16", "int8"):
        print(build_engine(dst, BuildConfig(variant=v, max_batch=8)).describe())
    return load_package(dst)


def _feeds(pkg, n, seed=3):
    wins = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command or "lights on")
            for s in generate_samples(get_scenario("smart_home"), n, seed=seed)]
    return pkg.feed_builder().build(wins)[0]


@pytest.mark.gpu
@pytest.mark.parametrize("variant,onnx_variant,atol,agree", [("fp32", "fp32", 1e-3, 1.0), ("fp16", "fp32", 0.25, 0.95),
                                                              ("int8", "int8_trt", 2.0, 0.9)])
def test_tensorrt_matches_onnxruntime(engines, variant, onnx_variant, atol, agree):
    feeds = _feeds(engines, 8, seed=21)
    with open_backend("onnxruntime", engines, variant=onnx_variant, threads=2) as ref, \
            open_backend("tensorrt", engines, variant=variant) as be:
        a, b = ref.infer(feeds), be.infer(feeds)
        assert be.info.backend == "tensorrt" and be.info.precision == variant
    for name in ("event_logits", "action_logits"):
        assert b[name].shape == a[name].shape and b[name].dtype == np.float32
        assert np.abs(a[name] - b[name]).max() < atol, (name, np.abs(a[name] - b[name]).max())
    assert np.mean(a["action_logits"].argmax(1) == b["action_logits"].argmax(1)) >= agree


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_tensorrt_backend_checks_and_timing(engines, variant):
    n_events = len(engines.output("multilabel_logits").labels)
    n_actions = len(engines.output("class_logits").labels)
    with open_backend("tensorrt", engines, variant=variant) as be:
        for n in (1, 3, 8):
            out = be.infer(_feeds(engines, n))
            assert out["event_logits"].shape == (n, n_events) and out["action_logits"].shape == (n, n_actions)
        bad = _feeds(engines, 2)
        bad["image"] = bad["image"][:, :, :32]
        with pytest.raises(FeedError, match=r"input 'image': expected float32 \['batch', 3, \d+, \d+\]"):
            be.infer(bad)
        with pytest.raises(BackendError, match=r"exceeds engine .* --max-batch 9"):
            be.infer(_feeds(engines, 9))
        for n in (1, 8):
            feeds = _feeds(engines, n)
            for _ in range(20):
                be.infer(feeds)
            t0 = time.perf_counter_ns()
            for _ in range(100):
                be.infer(feeds)
            print(f"tensorrt {variant} batch {n}: {(time.perf_counter_ns() - t0) / 100 / 1e6:.3f} ms per call")
    be.close()  # a second close is harmless
