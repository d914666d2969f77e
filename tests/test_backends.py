"""The backend test suite: every backend runs the same checks.

The suite runs on ONNX Runtime (CPU), the null backend, and two GPU paths without a GPU:
the ``tensorrt`` backend over fake TensorRT and CUDA modules (test_tensorrt_runner.py's
rig), and ONNX Runtime's CUDA provider over :class:`FakeOrt` (sessions that compute on the
CPU but report the providers a GPU build would). Then the provider selection itself.
"""

import logging

import numpy as np
import onnxruntime as ort
import pytest

from edgefusion import BackendError, FeedError, FusionStep, FusionWindow, load_package, open_backend
from edgefusion.backends import availability
from edgefusion.backends import onnxruntime as ort_backend
from edgefusion.errors import ConfigError
from edgefusion.scenarios import generate_samples, get_scenario

BACKENDS = ["onnxruntime", "null", "tensorrt", "onnxruntime-cuda"]
TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_BUILD = [TRT, CUDA, CPU]  # what onnxruntime-gpu lists


class FakeSession:
    """A real CPU session that reports the providers a GPU build would have registered."""

    def __init__(self, path, sess_options, providers):
        self._real = ort.InferenceSession(path, sess_options=sess_options, providers=[CPU])
        self._providers = providers
        self.fallback = True

    def get_providers(self):
        return list(self._providers)

    def get_outputs(self):
        return self._real.get_outputs()

    def run(self, names, feeds):
        return self._real.run(names, feeds)

    def disable_fallback(self):
        self.fallback = False


class FakeOrt:
    """``onnxruntime`` as a GPU build would look: ``available`` providers; ``drop`` ones fail to start."""

    def __init__(self, available, drop=()):
        self.available, self.drop = list(available), set(drop)
        self.opened = []  # (the providers argument, the session)

    def __getattr__(self, name):
        return getattr(ort, name)

    def get_available_providers(self):
        return list(self.available)

    def InferenceSession(self, path, sess_options=None, providers=()):
        names = [p if isinstance(p, str) else p[0] for p in providers]
        session = FakeSession(path, sess_options, [n for n in names if n not in self.drop])
        self.opened.append((providers, session))
        return session


@pytest.fixture(scope="module")
def builtin():
    return load_package("smart_home")


@pytest.fixture
def pkg(request, builtin, monkeypatch):
    """The package a suite test runs on; for the GPU paths, with their fakes installed (and checked after)."""
    name = getattr(getattr(request.node, "callspec", None), "params", {}).get("name")
    if name == "tensorrt":
        from test_tensorrt_runner import NO_LEAKS, Rig  # here, not above: that module imports this one

        rig = Rig(monkeypatch, request.getfixturevalue("pkg_copy"), "protocol")
        yield rig.pkg
        assert rig.leaks() == NO_LEAKS
    elif name == "onnxruntime-cuda":
        fake = FakeOrt(GPU_BUILD)
        monkeypatch.setattr(ort_backend, "ort", fake)
        yield builtin
        assert all(s.get_providers()[0] == CUDA and not s.fallback for _, s in fake.opened)
    else:
        yield builtin


@pytest.fixture
def gpu_ort(monkeypatch, tmp_path):
    """Install a FakeOrt with every GPU provider, its TensorRT engine cache under ``tmp_path``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def install(available=GPU_BUILD, drop=()):
        fake = FakeOrt(available, drop)
        monkeypatch.setattr(ort_backend, "ort", fake)
        return fake

    return install


def _feeds(pkg, n=2):
    s = get_scenario("smart_home")
    wins = [FusionWindow(t_ns=0, image=x.image, audio=x.audio, command=x.command or "lights on")
            for x in generate_samples(s, n, seed=3)]
    return pkg.feed_builder().build(wins)[0]


@pytest.mark.parametrize("name", BACKENDS)
def test_infer_returns_declared_outputs_for_any_batch(pkg, name):
    with open_backend(name, pkg, threads=1) as be:
        for n in (1, 3):
            out = be.infer(_feeds(pkg, n))
            assert out["event_logits"].shape == (n, 7) and out["event_logits"].dtype == np.float32
            assert out["action_logits"].shape == (n, len(pkg.output("class_logits").labels))
        assert be.info.backend == name.split("-")[0] and be.info.precision == "fp32"


@pytest.mark.parametrize("name", BACKENDS)
def test_wrong_shape_names_input_expected_and_actual(pkg, name):
    feeds = _feeds(pkg)
    feeds["image"] = feeds["image"][:, :, :32]
    with open_backend(name, pkg) as be, pytest.raises(
        FeedError,
        match=r"input 'image': expected float32 \['batch', 3, 96, 96\], got float32 \[2, 3, 32, 96\] \(dimension 2\)",
    ):
        be.infer(feeds)


@pytest.mark.parametrize("name", BACKENDS)
def test_wrong_dtype_and_missing_input(pkg, name):
    feeds = _feeds(pkg)
    with open_backend(name, pkg) as be:
        bad = dict(feeds, tokens=feeds["tokens"].astype(np.int32))
        with pytest.raises(FeedError, match=r"input 'tokens': expected int64 \['batch', 16, 24\], got int32"):
            be.infer(bad)
        partial = {k: v for k, v in feeds.items() if k != "present"}
        with pytest.raises(FeedError, match=r"missing \['present'\], unexpected none"):
            be.infer(partial)
        mixed = dict(feeds, present=feeds["present"][:1])
        with pytest.raises(FeedError, match="dimension 'batch' is 1 here but 2 in input 'image'"):
            be.infer(mixed)


def test_onnxruntime_matches_across_thread_counts(pkg):
    feeds = _feeds(pkg, 4)
    with open_backend("onnxruntime", pkg, threads=1) as a, open_backend("onnxruntime", pkg, threads=2) as b:
        np.testing.assert_allclose(a.infer(feeds)["action_logits"], b.infer(feeds)["action_logits"], atol=1e-5)


def test_threads_auto_times_each_count_and_keeps_the_fastest(pkg, monkeypatch):
    monkeypatch.setattr(ort_backend.os, "cpu_count", lambda: 2)
    feeds = _feeds(pkg, 2)
    with open_backend("onnxruntime", pkg, threads="auto") as auto, open_backend("onnxruntime", pkg, threads=1) as one:
        assert sorted(auto.auto_threads) == [1, 2] and all(ms > 0 for ms in auto.auto_threads.values())
        assert auto.threads == min(auto.auto_threads, key=auto.auto_threads.__getitem__)
        assert f"{auto.threads} threads" in str(auto.info)
        np.testing.assert_allclose(auto.infer(feeds)["action_logits"], one.infer(feeds)["action_logits"], atol=1e-5)
    with open_backend("null", pkg, threads="auto") as be:
        assert be.threads is None  # nothing to measure
    with pytest.raises(ConfigError, match="threads 'auto' is measured by the ONNX Runtime backends only"):
        open_backend("tensorrt", pkg, threads="auto")


@pytest.mark.parametrize("spin", [True, False])
def test_spinning_is_a_session_option_and_changes_no_output(pkg, spin):
    feeds = _feeds(pkg, 2)
    with open_backend("onnxruntime", pkg, threads=2, spin=spin) as be, \
            open_backend("onnxruntime", pkg, threads=1) as ref:
        opts = be.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        assert opts == ("1" if spin else "0")
        np.testing.assert_allclose(be.infer(feeds)["action_logits"], ref.infer(feeds)["action_logits"], atol=1e-5)


def test_requested_gpu_provider_is_never_silently_replaced(pkg):
    with pytest.raises(BackendError, match="TensorrtExecutionProvider was requested but"):
        open_backend("onnxruntime", pkg, provider="tensorrt")
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider 'tpu'"):
        open_backend("onnxruntime", pkg, provider="tpu")


def test_unknown_backend(pkg):
    with pytest.raises(ConfigError, match="unknown backend 'onnx'; did you mean 'onnxruntime'"):
        open_backend("onnx", pkg)


def test_null_backend_delay_is_honoured(pkg):
    import time

    with open_backend("null", pkg, delay_ms=5) as be:
        feeds = _feeds(pkg, 1)
        t0 = time.perf_counter_ns()
        be.infer(feeds)
        assert time.perf_counter_ns() - t0 >= 5_000_000


def test_fusion_step_masks_and_times(pkg):
    with open_backend("onnxruntime", pkg, threads=1) as be:
        step = FusionStep(pkg, be)
        x = next(generate_samples(get_scenario("smart_home"), 1, seed=9))
        r0 = step(FusionWindow(t_ns=5, image=x.image, audio=x.audio, command=None))
        r1 = step(FusionWindow(t_ns=6, image=None, audio=x.audio, command="lock the door"))
    assert (r0.seq, r1.seq) == (0, 1)
    assert r0.missing == ("text",) and r1.missing == ("image",)
    assert r0.action in pkg.output("class_logits").labels
    assert set(r0.timings_ns) == {"preprocess", "inference", "postprocess", "end_to_end"}
    assert r0.timings_ns["end_to_end"] >= r0.timings_ns["inference"] > 0


# --- ONNX Runtime's GPU execution providers, without a GPU (FakeOrt) ----------------------------------------


def _chain(fake):
    """The providers argument of the last session opened, options included."""
    return fake.opened[-1][0]


def test_onnxruntime_cuda_leads_with_cuda_and_says_so_everywhere(builtin, gpu_ort):
    from edgefusion.benchmark.model_only import model_only
    from edgefusion.benchmark.runner import BenchConfig

    fake = gpu_ort()
    with open_backend("onnxruntime-cuda", builtin, threads=1, device=1) as be:
        assert _chain(fake) == [(CUDA, {"device_id": 1}), CPU]
        assert str(be.info) == "onnxruntime (CUDAExecutionProvider, fp32, 1 threads)"
        assert be.providers == [CUDA, CPU] and not fake.opened[-1][1].fallback
        assert be.infer(_feeds(builtin, 2))["action_logits"].shape == (2, len(builtin.output("class_logits").labels))
    windows = [FusionWindow(t_ns=0, image=x.image, audio=x.audio, command="lights on")
               for x in generate_samples(get_scenario("smart_home"), 2, seed=1)]
    rows = model_only(builtin, BenchConfig("onnxruntime-cuda", "fp32", 1), windows, batches=(1,), iters=2, warmup=1)
    assert rows[0]["backend"] == "onnxruntime (CUDAExecutionProvider, fp32, 1 threads)"


def test_onnxruntime_trt_caches_its_engines_per_artifact_and_keeps_cuda_behind(builtin, gpu_ort, tmp_path):
    fake = gpu_ort()
    with open_backend("onnxruntime-trt", builtin, variant="int8_trt", provider_options={"trt_int8_enable": True}) as be:
        assert be.info.provider == TRT
    (trt, trt_opts), (cuda, cuda_opts), cpu = _chain(fake)
    cache = tmp_path / "cache" / "edgefusion" / "ort-tensorrt" / \
        f"{builtin.name}-int8_trt-{builtin.manifest.artifacts['int8_trt'].sha256[:12]}"
    assert (trt, cuda, cpu) == (TRT, CUDA, CPU) and cache.is_dir()
    assert trt_opts == {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache), "trt_int8_enable": True}
    assert cuda_opts == {"device_id": 0}  # the caller's options go to the leader only


def test_an_unwritable_cache_costs_the_engine_cache_not_the_session(builtin, gpu_ort, tmp_path, monkeypatch, caplog):
    fake = gpu_ort()
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    with caplog.at_level(logging.WARNING), open_backend("onnxruntime-trt", builtin) as be:
        assert be.info.provider == TRT
    assert _chain(fake)[0] == (TRT, {"device_id": 0}) and "no TensorRT engine cache" in caplog.text


def test_a_preference_list_takes_the_first_provider_available(builtin, gpu_ort):
    gpu_ort([CUDA, CPU])
    with open_backend("onnxruntime", builtin, providers=["tensorrt", "cuda", "cpu"]) as be:
        assert be.info.provider == CUDA and be.providers == [CUDA, CPU]
    gpu_ort([CPU])
    with open_backend("onnxruntime", builtin, providers=["tensorrt", "cuda", "cpu"]) as be:
        assert be.info.provider == CPU  # the list allowed the CPU
    with pytest.raises(BackendError, match=r"none of the ONNX Runtime providers \['tensorrt', 'cuda'\] is available.*"
                                           r"add 'cpu' to the list"):
        open_backend("onnxruntime", builtin, providers=["tensorrt", "cuda"])


def test_a_provider_that_onnxruntime_drops_at_open_is_an_error_unless_the_list_allows_the_next(builtin, gpu_ort,
                                                                                              caplog):
    gpu_ort(drop={TRT})  # listed by onnxruntime-gpu, but libnvinfer is missing
    with pytest.raises(BackendError, match=r"dropped TensorrtExecutionProvider .*`edgefusion doctor`"):
        open_backend("onnxruntime-trt", builtin)
    with caplog.at_level(logging.WARNING), open_backend("onnxruntime", builtin, providers=["tensorrt", "cuda"]) as be:
        assert be.info.provider == CUDA
    assert "could not start TensorrtExecutionProvider; running on CUDAExecutionProvider" in caplog.text
    gpu_ort(drop={TRT, CUDA})
    with pytest.raises(BackendError, match="dropped TensorrtExecutionProvider, CUDAExecutionProvider"):
        open_backend("onnxruntime", builtin, providers=["tensorrt", "cuda"])


def test_provider_arguments_are_checked(builtin, gpu_ort):
    gpu_ort()
    with pytest.raises(BackendError, match="provider or a list of providers, not both"):
        open_backend("onnxruntime-cuda", builtin, providers=["cuda"])
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider 'rocm'"):
        open_backend("onnxruntime", builtin, providers=["cuda", "rocm"])
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider ''"):
        open_backend("onnxruntime", builtin, providers=[])


def test_the_cpu_session_registers_only_the_cpu(builtin):
    with open_backend("onnxruntime", builtin, threads=1) as be:
        assert be.providers == [CPU] and be.session.get_providers() == [CPU]


def test_availability_lists_the_gpu_providers_of_this_onnxruntime(builtin, gpu_ort, monkeypatch):
    rows = {(b, v): (ok, why) for v, b, ok, why in availability(builtin)}
    assert rows[("onnxruntime-cuda", "*")][0] is False and "needs onnxruntime-gpu" in rows[("onnxruntime-cuda", "*")][1]
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU_BUILD)
    rows = {(b, v): (ok, why) for v, b, ok, why in availability(builtin)}
    assert [v for b, v in rows if b == "onnxruntime-trt"] == ["fp32", "int8_trt"]
    assert [v for b, v in rows if b == "onnxruntime-cuda"] == ["fp32", "int8"]
    assert all(ok for (b, _), (ok, _) in rows.items() if b == "onnxruntime")
    # the GPU providers are only pretended here: a session is opened and refuses, so no GPU row claims to run
    assert not any(ok for (b, _), (ok, _) in rows.items() if b in ("onnxruntime-cuda", "onnxruntime-trt"))
    assert all(why.startswith("does not run here: ") for (b, _), (_, why) in rows.items() if b != "onnxruntime"
               and b != "tensorrt")
