"""ONNX export with a parity check, written as a model package.

The dynamo exporter (opset 20, weights inside the file) traces with an example batch of
2; afterwards every declared dynamic axis is checked to be symbolic in the graph. Parity
against PyTorch is measured on held-out samples and stored in the manifest; export fails
(and writes nothing) when it does not hold. The package is written by the one package
writer, :func:`edgefusion.packaging.staged_package`: staged beside ``out``, verified, then
swapped into place.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgefusion.dataset import INPUT_ORDER, build_dataset
from edgefusion.errors import ExportError, ParityError
from edgefusion.package import FORMAT_VERSION
from edgefusion.packaging import file_record, staged_package
from edgefusion.policy import TASK_FILE
from edgefusion.preprocess import FeedBuilder
from edgefusion.scenarios import EVAL_SEED_OFFSET, get_scenario
from export.evaluate import predict_all
from export.train import TrainConfig, load_checkpoint

__all__ = ["PARITY_ATOL", "export_package"]

PARITY_ATOL = 1e-4
OPSET = 20
#: the model's outputs in its return order (the intent logits only with an intent head)
OUTPUT_NAMES = ("event_logits", "action_logits", "intent_logits")
PARITY_SEED_OFFSET = 7  # parity data: held-out, and distinct from the evaluation set


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def _shapes(ck: dict[str, Any]) -> dict[str, tuple[list[int | str], str, str]]:
    m = ck["model_config"]
    s, t, f, L = m["image_size"], m["n_frames"], m["n_mels"], m["max_tokens"]
    grams = [m["max_ngrams"]] if m.get("text") == "hashed_ngrams" else []
    return {
        "image": (["batch", 3, s, s], "float32", "image"),
        "audio": (["batch", t, f], "float32", "audio"),
        "tokens": (["batch", L, *grams], "int64", "text"),
        "token_mask": (["batch", L], "float32", "text"),
        "present": (["batch", 3], "float32", "presence"),
    }


def _check_symbolic(path: Path) -> None:
    graph = onnx.load(str(path), load_external_data=False).graph
    for vi in list(graph.input) + list(graph.output):
        d0 = vi.type.tensor_type.shape.dim[0]
        if not d0.dim_param or d0.HasField("dim_value"):
            raise ExportError(f"exported ONNX: dimension 0 of '{vi.name}' is not symbolic "
                              f"(dim_value={d0.dim_value}); the batch axis must stay dynamic")


def parity(model: torch.nn.Module, onnx_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Max abs logit difference and argmax agreement between PyTorch and ONNX Runtime."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    torch_outs = predict_all(model, feeds)
    onnx_outs = sess.run(OUTPUT_NAMES[: len(torch_outs)], {k: feeds[k] for k in INPUT_ORDER})
    (ev_o, act_o, *int_o), (ev_t, act_t, *int_t) = onnx_outs, torch_outs
    out = {
        "samples": len(act_t),
        "max_abs_diff": float(max(np.abs(o - t).max() for o, t in zip(onnx_outs, torch_outs))),
        "argmax_agreement": float(np.mean(act_o.argmax(1) == act_t.argmax(1))),
        "event_decision_agreement": float(np.mean((ev_o > 0) == (ev_t > 0))),
        "atol": PARITY_ATOL,
    }
    if int_o:
        out["intent_argmax_agreement"] = float(np.mean(int_o[0].argmax(1) == int_t[0].argmax(1)))
    return out


#: a package name: what results, logs and metrics call the model
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def export_package(checkpoint: str | Path, out_dir: str | Path, n_parity: int = 256,
                   command: str | None = None, force: bool = False, parity_data: str | Path | None = None,
                   name: str | None = None) -> Path:
    """Export ``checkpoint`` to ``out_dir`` as a verified model package; returns its path.

    Parity runs on held-out samples of the checkpoint's scenario, or - for a checkpoint
    trained on recorded datasets, or with ``parity_data`` - on a dataset's windows. ``name``
    replaces the default ``TASK-ARCH`` (a fine-tuned ``smart_home`` is otherwise called as the
    built-in package is).
    """
    if name is not None and not PACKAGE_NAME.fullmatch(name):
        raise ExportError(f"--name {name!r}: a package name is 1-64 letters, digits, '.', '_' or '-', starting "
                          "with a letter or digit")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; choose a new --out or pass --force to replace it")
    model, ck = load_checkpoint(checkpoint)
    feeds, parity_source = _parity_feeds(ck, max(n_parity, 2), parity_data)
    example = tuple(torch.from_numpy(feeds[k][:2]) for k in INPUT_ORDER)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with staged_package(out, new=True) as st:
        onnx_path = st.path / "model.fp32.onnx"
        try:
            torch.onnx.export(model, example, str(onnx_path), dynamo=True, opset_version=OPSET, external_data=False,
                              input_names=list(INPUT_ORDER),
                              output_names=list(OUTPUT_NAMES[: 3 if model.cfg.n_intents else 2]),
                              dynamic_shapes=tuple({0: batch} for _ in INPUT_ORDER), verbose=False)
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed for {checkpoint}: {exc}") from exc
        _check_symbolic(onnx_path)
        par = parity(model, onnx_path, feeds)
        if par["max_abs_diff"] > PARITY_ATOL or min(par["argmax_agreement"], par.get("intent_argmax_agreement", 1)) < 1:
            raise ParityError(f"ONNX differs from PyTorch on {par['samples']} held-out samples: max |Δlogit| "
                              f"{par['max_abs_diff']:.3g} (limit {PARITY_ATOL}), argmax agreement "
                              f"{100 * par['argmax_agreement']:.2f}% (need 100%); nothing was written")
        shutil.copyfile(checkpoint, st.path / "checkpoint.pt")
        task_text = ((ck.get("provenance") or {}).get("task") or {}).get("text")
        if task_text:  # the task's rules and policy travel with the package (edgefusion.policy.task_of)
            (st.path / TASK_FILE).write_text(task_text, encoding="utf-8")
        st.manifest.update(_manifest(ck, st.path, par, parity_source,
                                     command or f"edgefusion export {checkpoint} --out {out}"))
        if name is not None:
            st.manifest["name"] = name
        st.commit()  # verifies every hash, then swaps the package into place
    return out


def _parity_feeds(ck: dict[str, Any], n: int, parity_data: str | Path | None) -> tuple[dict[str, np.ndarray],
                                                                                      dict[str, Any]]:
    """Parity feeds and where they came from: a dataset's windows (val first), else the scenario's held-out samples."""
    cfg = ck["train_config"]
    datasets = [d["path"] for d in (ck.get("provenance") or {}).get("datasets", [])]
    root = parity_data or (datasets[0] if datasets else None)
    if root is not None:
        from calibration.datasets import same_inputs
        from edgefusion.dataset import load_split, read_manifest

        if not (Path(root) / "dataset.json").is_file():
            raise ExportError(f"parity needs samples like the training data: the checkpoint was trained on dataset "
                              f"{root}, which is not there any more; pass --parity-data DIR (a dataset cut with the "
                              "checkpoint's preprocessing)")
        diff = same_inputs(ck["inputs"], read_manifest(root)["package"]["inputs"])
        if diff is not None:
            raise ExportError(f"dataset {root} was built for other feeds than the checkpoint's ({diff}); parity needs "
                              "a dataset cut with the checkpoint's preprocessing")
        parts = [load_split(root, s) for s in ("val", "train")]
        feeds = {k: np.concatenate([p[k] for p in parts])[:n] for k in INPUT_ORDER}
        if len(feeds["image"]) < 2:
            raise ExportError(f"dataset {root} has fewer than 2 windows; parity needs at least 2")
        return feeds, {"dataset": str(root), "windows": len(feeds["image"])}
    if not cfg.get("scenario"):
        raise ExportError("the checkpoint names neither a scenario nor a dataset to take parity samples from; pass "
                          "--parity-data DIR")
    seed = cfg["seed"] + EVAL_SEED_OFFSET + PARITY_SEED_OFFSET
    data = build_dataset(get_scenario(cfg["scenario"]), FeedBuilder([tuple(x) for x in ck["inputs"]]), n, seed)
    return data.feeds, {"seed": seed}


def train_command(cfg: dict[str, Any]) -> str:
    """The ``edgefusion train`` command line that reproduces a checkpoint's synthetic training."""
    cmd = (f"edgefusion train --scenario {cfg['scenario']} --arch {cfg['arch']} --seed {cfg['seed']} "
           f"--epochs {cfg['epochs']} --samples {cfg['n_train']} --threads {cfg['threads']}")
    if not cfg.get("augment", False):  # checkpoints from before augmentation lack the key: they trained clean
        return cmd + " --no-augment"
    if cfg.get("corpus") is None:
        cmd += " --no-real-backgrounds"
    elif cfg["corpus"] != "runs/corpus":
        cmd += f" --corpus {shlex.quote(str(cfg['corpus']))}"
    music = cfg.get("music", 0)  # checkpoints from before the option lack the key: they trained without music
    if music != TrainConfig.music:
        cmd += f" --music {music}"
    if cfg.get("spoken"):
        cmd += f" --spoken {cfg['spoken']}"
    if cfg.get("real_events"):
        cmd += f" --real-events {cfg['real_events']:g}"
    return cmd


def _manifest(ck: dict[str, Any], stage: Path, par: dict[str, Any], parity_source: dict[str, Any],
              command: str) -> dict[str, Any]:
    shapes = _shapes(ck)
    inputs = []
    for name, pre in ck["inputs"]:
        shape, dtype, modality = shapes[name]
        inputs.append({"name": name, "modality": modality, "dtype": dtype, "shape": shape, "preprocess": pre})
    cfg = ck["train_config"]
    metrics = ck["metrics"]
    prov = ck.get("provenance") or {}
    task = cfg.get("task")
    task_name = prov.get("task", {}).get("name") if task else None
    extra = {k: prov[k] for k in ("task", "datasets", "init") if prov.get(k)}
    if "task" in extra:
        extra["task"] = {k: v for k, v in extra["task"].items() if k != "text"}
    return {
        "format_version": FORMAT_VERSION,
        "name": f"{task_name or cfg['scenario']}-{cfg['arch']}",
        "scenario": cfg["scenario"],
        "inputs": inputs,
        "outputs": [
            {"name": "event_logits", "kind": "multilabel_logits", "role": "events", "labels": ck["events"],
             "threshold": 0.5},
            {"name": "action_logits", "kind": "class_logits", "role": "action", "labels": ck["actions"]},
            *([{"name": "intent_logits", "kind": "class_logits", "role": "intent", "labels": ck["intents"]}]
              if ck["model_config"].get("n_intents") else []),
        ],
        "artifacts": {"fp32": file_record(stage, "model.fp32.onnx", format="onnx", opset=OPSET, precision="fp32")},
        "sources": {"checkpoint": file_record(stage, "checkpoint.pt", format="torch"),
                    **({"task": file_record(stage, TASK_FILE, format="toml")}
                       if (stage / TASK_FILE).is_file() else {})},
        "engines": {},
        "model": ck["model_config"],
        "parity": {**par, **parity_source},
        "provenance": {
            "command": command,
            "train_command": prov.get("command") or train_command(cfg),
            "seed": cfg["seed"],
            **extra,
            "git_revision": _git_revision(),
            "data_sha256": metrics.get("train_data_sha256"),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tools": {"python": sys.version.split()[0], "torch": torch.__version__, "onnx": onnx.__version__,
                      "onnxruntime": ort.__version__, "numpy": np.__version__},
            "train_config": cfg,
            "metrics": {k: metrics[k] for k in ("held_out", "held_out_hard", "held_out_robust", "val", "parameters",
                                                "train_seconds")
                        if k in metrics},
        },
    }
