"""The backend test suite: every backend runs the same checks (TensorRT joins when present)."""

import numpy as np
import pytest

from edgefusion import BackendError, FeedError, FusionStep, FusionWindow, load_package, open_backend
from edgefusion.errors import ConfigError
from edgefusion.scenarios import generate_samples, get_scenario

BACKENDS = ["onnxruntime", "null"]


@pytest.fixture(scope="module")
def pkg():
    return load_package("smart_home")


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
            assert out["action_logits"].shape == (n, 8)
        assert be.info.backend == name and be.info.precision == "fp32"


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
        with pytest.raises(FeedError, match=r"input 'tokens': expected int64 \['batch', 12\], got int32"):
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
