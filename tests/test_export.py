"""Training a few steps and exporting a tiny model: loss falls, parity holds, batch is symbolic."""

import os
import sys

import numpy as np
import onnx
import pytest

from edgefusion import FusionWindow, load_package, open_backend
from edgefusion.errors import ExportError, ParityError

pytest.importorskip("torch")

import torch

from export import onnx_export
from export.train import TrainConfig, load_checkpoint, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(scenario="driving", n_train=384, n_eval=64, epochs=3, batch_size=32, lr=3e-3, threads=2,
                      augment=False)  # clean data: the loss-falls check below is calibrated on it
    return train(cfg, out, progress=False)


@pytest.mark.slow
def test_a_few_steps_make_the_loss_fall(tiny):
    assert len(tiny.losses) == 3 * 12
    assert np.mean(tiny.losses[-6:]) < 0.8 * np.mean(tiny.losses[:6])
    m = tiny.metrics
    assert set(m["held_out"]["ablation_action_accuracy"]) == {"image", "audio", "text"}
    assert 0 <= m["held_out"]["event_f1"]["macro"] <= 1


@pytest.mark.slow
def test_export_parity_and_symbolic_batch(tiny, tmp_path):
    pkg_dir = onnx_export.export_package(tiny.checkpoint, tmp_path / "pkg", n_parity=256)
    pkg = load_package(pkg_dir)
    par = pkg.manifest.raw["parity"]
    assert par["samples"] == 256 and par["max_abs_diff"] <= 1e-4 and par["argmax_agreement"] == 1.0
    graph = onnx.load(str(pkg.artifact("fp32"))).graph
    assert all(vi.type.tensor_type.shape.dim[0].dim_param for vi in [*graph.input, *graph.output])
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    assert {o.op_type for o in graph.node} >= {"Conv", "GRU", "Softmax"}
    with open_backend("onnxruntime", pkg, threads=1) as be:
        feeds = {i.name: np.zeros([5 if d == "batch" else d for d in i.shape], i.dtype) for i in pkg.inputs}
        assert be.infer(feeds)["action_logits"].shape == (5, 6)
    with pytest.raises(ExportError, match="exists and is not empty"):
        onnx_export.export_package(tiny.checkpoint, pkg_dir)


@pytest.mark.slow
def test_export_fails_loudly_when_parity_fails(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_ATOL", 0.0)
    with pytest.raises(ParityError, match=r"max \|Δlogit\| .* \(limit 0.0\).*nothing was written"):
        onnx_export.export_package(tiny.checkpoint, tmp_path / "bad", n_parity=16)
    assert not (tmp_path / "bad").exists()


def test_export_with_force_replaces_the_whole_package(tiny, tmp_path):
    out = tmp_path / "deep" / "pkg"
    onnx_export.export_package(tiny.checkpoint, out, n_parity=16)
    (out / "stale.txt").write_text("from the previous package")
    onnx_export.export_package(tiny.checkpoint, out, n_parity=16, force=True)
    assert not (out / "stale.txt").exists()
    load_package(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["pkg"]  # no stage or backup left beside it


def test_export_names_the_package_as_asked(tiny, tmp_path):
    pkg = load_package(onnx_export.export_package(tiny.checkpoint, tmp_path / "pkg", n_parity=16, name="kitchen-v2"))
    assert pkg.name == "kitchen-v2" and pkg.manifest.scenario == "driving"
    with pytest.raises(ExportError, match="--name 'my model': a package name is 1-64 letters"):
        onnx_export.export_package(tiny.checkpoint, tmp_path / "bad", n_parity=16, name="my model")
    assert not (tmp_path / "bad").exists()


def test_a_failed_export_leaves_no_directories_behind(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_ATOL", 0.0)
    with pytest.raises(ParityError):
        onnx_export.export_package(tiny.checkpoint, tmp_path / "new" / "dirs" / "pkg", n_parity=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["smart_home", "driving"])
def test_the_shipped_checkpoints_load_with_weights_only(name):
    pkg = load_package(name)  # verifies the checkpoint's sha256 against the manifest
    model, ck = load_checkpoint(pkg.path / pkg.manifest.raw["sources"]["checkpoint"]["path"])
    assert ck["events"] == list(pkg.output("multilabel_logits").labels)
    assert sum(p.numel() for p in model.parameters()) == pkg.manifest.raw["provenance"]["metrics"]["parameters"]


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model_config": {"channels": [8]}, "payload": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ExportError, match="refused to load the checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_missing_or_truncated_checkpoint_is_an_input_error(tmp_path, capsys):
    from edgefusion.cli import main

    assert main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "p")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    good = (load_package("smart_home").path / "checkpoint.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    assert main(["export", str(tmp_path / "cut.pt"), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and not (tmp_path / "p").exists()


@pytest.fixture
def torch_backend_module_dropped_after():
    # Tests that simulate a missing torch by blocking `import` statements (test_bench) need
    # export.torch_backend not to be cached by an earlier test; this one imports it.
    yield
    sys.modules.pop("export.torch_backend", None)


def test_the_torch_backend_opens_by_name_and_agrees_with_onnxruntime(torch_backend_module_dropped_after):
    pkg = load_package("smart_home")
    win = FusionWindow(t_ns=0, image=None, audio=None, command="lock the door")
    feeds, _ = pkg.feed_builder().build([win, win])
    with open_backend("torch", pkg, threads=1) as be, open_backend("onnxruntime", pkg, threads=1) as ref:
        assert be.info.backend == "torch"
        got, want = be.infer(feeds), ref.infer(feeds)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4)
