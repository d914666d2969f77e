"""The TensorRT runner without a GPU: fake ``tensorrt`` and CUDA modules, each CUDA provider.

The null-device practice: ``fake_tensorrt.py`` and ``fake_cuda.py`` stand in for TensorRT,
cuda-python and pycuda, so the runner's buffer sizing, dtypes, dynamic shapes, stream and
close logic and its errors run in CI. Real engines on a real GPU are in test_tensorrt.py.
"""

import hashlib
import json
import subprocess
import sys
import threading
import types

import numpy as np
import pytest
import test_backends as backend_suite
from fake_cuda import FakeGpu, FakeProvider, fake_cuda_runtime, fake_pycuda
from fake_tensorrt import PLAN, DataType, FakeTensorRT, TensorIOMode, fake_model, tensors_for

from edgefusion import FusionWindow, load_package, open_backend
from edgefusion.backends.base import BackendInfo
from edgefusion.backends.tensorrt import INSTALL_HINT, CudaPythonProvider, Machine, PyCudaProvider, load_cuda, runner
from edgefusion.errors import BackendError, IntegrityError, MissingArtifactError, MissingDependencyError
from edgefusion.scenarios import generate_samples, get_scenario

ORIN = Machine("10.3.0", (8, 7), "Orin")
KEY = "trt10.3.0/sm87/orin/fp32"
NO_LEAKS = {"device buffers": 0, "pinned buffers": 0, "streams": 0, "contexts": 0}
# bytes of each tensor at the fake engine's largest profile shape, batch 8 (the shipped smart_home package's:
# image 3x96x96 float32, audio 49x40 float32, tokens 16x24 int64 hashed n-grams, token_mask 16, present 3; event,
# action and intent logits)
_HOME = load_package("smart_home")
LABELS = {o.name: len(o.labels) for o in _HOME.outputs}
MAX_BYTES = {i.name: 8 * int(np.prod([d for d in i.shape if isinstance(d, int)])) * np.dtype(i.dtype).itemsize
             for i in _HOME.inputs} | {name: 8 * n * 4 for name, n in LABELS.items()}
OUTPUTS = [o.name for o in _HOME.outputs]


def _install_cuda(monkeypatch, gpu, layout):
    """Make ``import`` find fake CUDA bindings: cuda-python new (``bindings``) or old (``cudart``), pycuda, or none."""
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # None: import raises ImportError
    if layout == "none":
        return None
    if layout == "pycuda":
        drv = fake_pycuda(gpu)
        monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=drv))
        monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
        return drv.pinned
    rt = fake_cuda_runtime(gpu)
    if layout == "bindings":
        monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(bindings=types.SimpleNamespace(runtime=rt)))
        monkeypatch.setitem(sys.modules, "cuda.bindings", sys.modules["cuda"].bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    else:
        monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(cudart=rt))
        monkeypatch.setitem(sys.modules, "cuda.cudart", rt)
    return rt.pinned


def _feeds(pkg, n, seed=3):
    wins = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command or "lights on")
            for s in generate_samples(get_scenario("smart_home"), n, seed=seed)]
    return pkg.feed_builder().build(wins)[0]


class Rig:
    """A fake GPU with fake TensorRT and one CUDA provider importable, and a package with one fp32 engine for it."""

    def __init__(self, monkeypatch, pkg_dir, provider, gpu=None, version="10.3.0.30"):
        self.gpu = gpu or FakeGpu()
        manifest = json.loads((pkg_dir / "manifest.json").read_text())
        entry = {"path": "engines/fp32.engine", "sha256": hashlib.sha256(PLAN).hexdigest(), "variant": "fp32",
                 "onnx_variant": "fp32", "onnx_sha256": manifest["artifacts"]["fp32"]["sha256"],
                 "tensorrt": ORIN.tensorrt, "compute_capability": list(ORIN.compute_capability), "gpu": ORIN.gpu}
        manifest["engines"] = {KEY: entry}
        (pkg_dir / "engines").mkdir()
        (pkg_dir / entry["path"]).write_bytes(PLAN)
        (pkg_dir / "manifest.json").write_text(json.dumps(manifest))
        self.pkg = load_package(pkg_dir)
        self.trt = FakeTensorRT(self.gpu, tensors_for(self.pkg), version)
        monkeypatch.setitem(sys.modules, "tensorrt", self.trt)
        if provider == "protocol":
            _install_cuda(monkeypatch, self.gpu, "none")  # only the provider below may be used
            provider_obj = FakeProvider(self.gpu)
            self.pinned = provider_obj.pinned
            monkeypatch.setattr(runner, "load_cuda", lambda device, purpose: provider_obj)
        else:
            self.pinned = _install_cuda(monkeypatch, self.gpu, "pycuda" if provider == "pycuda" else "bindings")
        self.provider_name = {"protocol": "fake-cuda"}.get(provider, provider)

    def open(self, **options):
        return open_backend("tensorrt", self.pkg, variant="fp32", **options)

    def leaks(self):
        return {"device buffers": len(self.gpu.mem), "pinned buffers": len(self.pinned),
                "streams": len(self.gpu.streams), "contexts": sum(c() is not None for c in self.trt.contexts)}

    def pinned_sizes(self):
        return sorted(len(p) for p in (self.pinned.values() if isinstance(self.pinned, dict) else self.pinned))

    def expected(self, feeds):
        return fake_model(feeds, [t for t in self.trt.tensors if t.mode == TensorIOMode.OUTPUT])


@pytest.fixture(params=["protocol", "cuda-python", "pycuda"])
def rig(request, monkeypatch, pkg_copy):
    return Rig(monkeypatch, pkg_copy, request.param)


@pytest.fixture
def fake(monkeypatch, pkg_copy):
    return Rig(monkeypatch, pkg_copy, "protocol")


@pytest.mark.parametrize("check", [backend_suite.test_infer_returns_declared_outputs_for_any_batch,
                                   backend_suite.test_wrong_shape_names_input_expected_and_actual,
                                   backend_suite.test_wrong_dtype_and_missing_input], ids=lambda f: f.__name__[5:])
def test_the_backend_suite_passes_on_fake_tensorrt(rig, check):
    check(rig.pkg, "tensorrt")
    assert rig.leaks() == NO_LEAKS


def test_buffers_are_allocated_once_at_the_profile_maximum(rig):
    with rig.open() as be:
        ctx = rig.trt.contexts[0]()
        assert {n: rig.gpu.mem[ptr].size for n, ptr in ctx.addresses.items()} == MAX_BYTES
        assert rig.pinned_sizes() == sorted(MAX_BYTES.values())
        assert be.max_batch == 8 and len(rig.gpu.streams) == 1
        assert be.info == BackendInfo("tensorrt", f"TensorRT 10.3.0, Orin (sm87), {rig.provider_name}", "fp32", None)
        rig.gpu.log.clear()
        for n in (1, 8, 3):
            be.infer(_feeds(rig.pkg, n))
        assert not rig.gpu.ops("malloc", "free", "create_stream")


def test_each_batch_runs_at_its_own_shapes_and_moves_only_its_bytes(rig):
    with rig.open() as be:
        previous = None
        for n in (1, 3, 8):
            feeds = _feeds(rig.pkg, n)
            rig.gpu.log.clear()
            rig.trt.log.clear()
            out = be.infer(feeds)
            assert rig.trt.log == [("set_input_shape", i.name, feeds[i.name].shape) for i in rig.pkg.inputs]
            assert rig.gpu.ops("h2d", "d2h") == [("h2d", feeds[i.name].nbytes) for i in rig.pkg.inputs] + \
                [("d2h", n * LABELS[o] * 4) for o in OUTPUTS]
            assert rig.gpu.log[-1][0] == "sync"  # results are read only after the stream is done
            for name, want in rig.expected(feeds).items():
                assert out[name].dtype == np.float32 and out[name].shape == want.shape == (n, LABELS[name])
                np.testing.assert_array_equal(out[name], want)
            if previous:  # outputs are copies: the next call does not overwrite them
                np.testing.assert_array_equal(previous[1]["event_logits"], rig.expected(previous[0])["event_logits"])
            previous = (feeds, out)


def test_engine_dtypes_decide_buffer_sizes_and_output_dtypes(fake):
    fake.trt.tensors = tensors_for(fake.pkg, dtypes={"event_logits": DataType.HALF, "action_logits": DataType.INT32})
    with fake.open() as be:
        ctx = fake.trt.contexts[0]()
        sizes = {n: fake.gpu.mem[ptr].size for n, ptr in ctx.addresses.items()}
        assert sizes == dict(MAX_BYTES, event_logits=8 * 7 * 2)
        feeds = _feeds(fake.pkg, 3)
        out = be.infer(feeds)
    assert out["event_logits"].dtype == np.float16 and out["action_logits"].dtype == np.int32
    for name, want in fake.expected(feeds).items():
        np.testing.assert_array_equal(out[name], want)


@pytest.mark.parametrize("break_it,match", [
    (lambda r: setattr(r.trt, "plan", b"another plan"),
     rf"TensorRT 10\.3\.0 could not deserialize engine {KEY} .*rebuild it with: edgefusion build-engine \S+ "
     r"--variant fp32$"),
    (lambda r: setattr(r.trt, "no_context", True), f"could not create an execution context for engine {KEY}"),
    (lambda r: setattr(r.trt, "tensors", tensors_for(r.pkg, drop="present")),
     r"has inputs \['image', 'audio', 'tokens', 'token_mask'\] and outputs \['event_logits', 'action_logits', "
     r"'intent_logits'\]; the manifest declares others"),
    (lambda r: setattr(r.trt, "tensors", tensors_for(r.pkg, dtypes={"tokens": DataType.INT32})),
     "input 'tokens' is int32, the manifest says int64; rebuild it with"),
    (lambda r: r.trt.refuse_address.add("audio"), "TensorRT refused the device address of tensor 'audio' of engine"),
    (lambda r: setattr(next(t for t in r.trt.tensors if t.name == "action_logits"), "data_dependent", True),
     rf"output 'action_logits' has shape \[-1, {LABELS['action_logits']}\] even with every input shape set"),
], ids=["not-deserializable", "no-context", "other-io", "other-dtype", "address-refused", "data-dependent-shape"])
def test_a_failed_open_says_why_and_releases_what_it_took(rig, break_it, match):
    break_it(rig)
    with pytest.raises(BackendError, match=match):
        rig.open()
    assert rig.leaks() == NO_LEAKS and all(pending == 0 for op, pending in rig.gpu.ops("destroy_stream"))


def test_infer_errors_name_the_engine_and_the_fix(fake):
    with fake.open() as be:
        fake.gpu.log.clear()
        with pytest.raises(BackendError, match=rf"batch 9 exceeds engine {KEY}'s optimization profile \(max 8\); "
                                               r"rebuild it with: edgefusion build-engine \S+ --variant fp32 "
                                               r"--max-batch 9$"):
            be.infer(_feeds(fake.pkg, 9))
        assert fake.gpu.log == []
        fake.trt.fail_execute = True
        with pytest.raises(BackendError, match=f"TensorRT failed to run engine {KEY}"):
            be.infer(_feeds(fake.pkg, 2))
        fake.trt.fail_execute = False
        feeds = _feeds(fake.pkg, 2)
        np.testing.assert_array_equal(be.infer(feeds)["action_logits"], fake.expected(feeds)["action_logits"])
    fake.trt.tensors = tensors_for(fake.pkg, min_batch=2)
    with fake.open() as be, pytest.raises(BackendError, match=r"refused shape \[1, 3, 96, 96\] for input 'image'"):
        be.infer(_feeds(fake.pkg, 1))


def test_close_syncs_then_frees_every_buffer_and_the_stream_once(rig):
    be = rig.open()
    be.infer(_feeds(rig.pkg, 2))
    rig.gpu.log.clear()
    be.close()
    ops = [op for op, _ in rig.gpu.log]
    assert ops[0] == "release_context"  # TensorRT lets go before the memory it points at is freed
    assert ops[1] == "sync" and ops.count("free") == len(MAX_BYTES) and rig.gpu.log[-1] == ("destroy_stream", 0)
    assert rig.leaks() == NO_LEAKS
    rig.gpu.log.clear()
    be.close()
    assert rig.gpu.log == []
    with pytest.raises(BackendError, match=f"the TensorRT session on engine {KEY} is closed"):
        be.infer(_feeds(rig.pkg, 1))


def test_a_session_opened_on_one_thread_runs_on_another(rig):
    feeds, out = _feeds(rig.pkg, 2), {}
    with rig.open() as be:
        worker = threading.Thread(target=lambda: out.update(be.infer(feeds)))
        worker.start()
        worker.join(30)
    assert set(out) == set(OUTPUTS)  # empty when the worker failed
    np.testing.assert_array_equal(out["event_logits"], rig.expected(feeds)["event_logits"])


def test_the_engine_is_chosen_by_the_tensorrt_and_gpu_that_are_present(monkeypatch, pkg_copy):
    rig = Rig(monkeypatch, pkg_copy, "cuda-python", FakeGpu("NVIDIA GeForce RTX 4090", (8, 9)), "10.7.0.23")
    with pytest.raises(MissingArtifactError, match=r"expected key trt10\.7\.0/sm89/nvidia-geforce-rtx-4090/fp32: "
                                                   rf"TensorRT 10\.7\.0, NVIDIA GeForce RTX 4090 \(sm89\)\); it holds "
                                                   rf"fp32 engines for {KEY} only"):
        rig.open()
    assert rig.leaks() == NO_LEAKS and not rig.gpu.ops("malloc")


def test_a_missing_or_altered_engine_file_is_refused_before_any_cuda_work(fake):
    path = fake.pkg.path / "engines" / "fp32.engine"
    path.write_bytes(PLAN + b"!")
    with pytest.raises(IntegrityError, match=r"fp32\.engine does not have the sha256 the manifest records; it "
                                             r"changed after it was built\. Rebuild it with: edgefusion build-engine"):
        fake.open()
    path.unlink()
    with pytest.raises(MissingArtifactError, match=rf"engine {KEY}: \S+fp32\.engine is missing; rebuild it with"):
        fake.open()
    assert fake.gpu.log == []


def test_a_provider_can_be_handed_in(monkeypatch, pkg_copy):
    rig = Rig(monkeypatch, pkg_copy, "pycuda")
    monkeypatch.setitem(sys.modules, "pycuda", None)  # load_cuda would fail: only the given provider is used
    with rig.open(cuda=FakeProvider(rig.gpu)) as be:
        assert be.info.provider.endswith("fake-cuda")
        feeds = _feeds(rig.pkg, 2)
        np.testing.assert_array_equal(be.infer(feeds)["event_logits"], rig.expected(feeds)["event_logits"])


@pytest.mark.parametrize("layout,name", [("bindings", "cuda-python"), ("cudart", "cuda-python"), ("pycuda", "pycuda")])
def test_load_cuda_finds_each_provider(monkeypatch, layout, name):
    _install_cuda(monkeypatch, FakeGpu("NVIDIA Jetson AGX Orin"), layout)
    cuda = load_cuda(0, "a test")
    assert cuda.name == name and cuda.device() == ("NVIDIA Jetson AGX Orin", (8, 7))


def test_without_a_cuda_library_the_error_names_the_extra(monkeypatch):
    _install_cuda(monkeypatch, FakeGpu(), "none")
    with pytest.raises(MissingDependencyError) as exc:
        load_cuda(0, "the tensorrt backend")
    assert str(exc.value) == ("the tensorrt backend needs the Python module 'cuda-python', which is not installed; "
                              f"install it with: pip install 'edgefusion[tensorrt]'. {INSTALL_HINT}")
    assert isinstance(exc.value.__cause__, ImportError)
    with pytest.raises(MissingDependencyError, match=r"'pycuda', which is not installed; install it with: pip "
                                                     r"install pycuda, or .* pip install 'edgefusion\[tensorrt\]'"):
        PyCudaProvider(0)


def test_cuda_errors_become_backend_errors(monkeypatch, pkg_copy):
    with pytest.raises(BackendError, match="CUDA cudaSetDevice failed: cudaErrorInvalidDevice"):
        CudaPythonProvider(1, runtime=fake_cuda_runtime(FakeGpu()))
    rig = Rig(monkeypatch, pkg_copy, "cuda-python", FakeGpu(capacity=MAX_BYTES["image"]))
    with pytest.raises(BackendError, match="CUDA cudaMalloc failed: cudaErrorMemoryAllocation"):
        rig.open()
    assert rig.leaks() == NO_LEAKS


RECORD_IMPORTS = """
import importlib.abc, sys
tried = []
class Record(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorrt", "cuda", "pycuda"):
            tried.append(name)
sys.meta_path.insert(0, Record())
import edgefusion.backends.tensorrt
print(tried)
"""


def test_importing_the_backend_imports_neither_tensorrt_nor_cuda():
    p = subprocess.run([sys.executable, "-c", RECORD_IMPORTS], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr
