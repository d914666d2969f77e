"""Seeded CPU training of the reference models, with held-out, hard and ablation metrics.

Example (a few steps, as the tests do)::

    from export.train import TrainConfig, train
    result = train(TrainConfig(scenario="smart_home", n_train=256, epochs=1), out_dir="runs/x")
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgefusion.dataset import INPUT_ORDER, Dataset, build_dataset, data_hash, input_specs, make_params
from edgefusion.errors import ExportError
from edgefusion.metrics import action_accuracy, event_f1
from edgefusion.preprocess import FeedBuilder
from edgefusion.scenarios import EVAL_SEED_OFFSET, get_scenario
from export.model import FusionNet, ModelConfig, count_parameters

__all__ = ["TrainConfig", "TrainResult", "evaluate", "predict", "train"]


@dataclass(frozen=True)
class TrainConfig:
    scenario: str = "smart_home"
    arch: str = "attention"
    seed: int = 0
    n_train: int = 12000
    n_eval: int = 2000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    drop_image: float = 0.1
    drop_audio: float = 0.1
    threads: int = 2
    image_size: int = 96


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, Any]
    losses: list[float] = field(default_factory=list)


def predict(model: nn.Module, feeds: dict[str, np.ndarray], batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Event and action logits for stacked feeds."""
    model.eval()
    ev, act = [], []
    with torch.inference_mode():
        for i in range(0, len(feeds["image"]), batch):
            args = [torch.from_numpy(feeds[k][i : i + batch]) for k in INPUT_ORDER]
            e, a = model(*args)
            ev.append(e.numpy())
            act.append(a.numpy())
    return np.concatenate(ev), np.concatenate(act)


def _masked(feeds: dict[str, np.ndarray], modality: int) -> dict[str, np.ndarray]:
    out = dict(feeds)
    present = feeds["present"].copy()
    present[:, modality] = 0.0
    out["present"] = present
    return out


def evaluate(model: nn.Module, ds: Dataset, events: tuple[str, ...], ablate: bool = True) -> dict[str, Any]:
    """Action accuracy, event F1 (per label and macro), and accuracy with each modality masked."""
    ev, act = predict(model, ds.feeds)
    out: dict[str, Any] = {
        "samples": len(ds),
        "action_accuracy": action_accuracy(act, ds.y_action),
        "event_f1": event_f1(ev, ds.y_events, events),
    }
    if ablate:
        out["ablation_action_accuracy"] = {
            name: action_accuracy(predict(model, _masked(ds.feeds, i))[1], ds.y_action)
            for i, name in enumerate(("image", "audio", "text"))
        }
        out["ablation_drop_points"] = {
            k: round(100 * (out["action_accuracy"] - v), 2) for k, v in out["ablation_action_accuracy"].items()
        }
    return out


def train(cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> TrainResult:
    """Train, evaluate on held-out data, write ``checkpoint.pt`` and ``metrics.json``."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    scen = get_scenario(cfg.scenario)
    img_p, aud_p, txt_p = make_params(scen, cfg.seed, cfg.image_size)
    builder = FeedBuilder(input_specs(img_p, aud_p, txt_p))
    with tqdm(total=cfg.n_train, desc="synthesize train", unit="sample", disable=not progress) as bar:
        train_ds = build_dataset(scen, builder, cfg.n_train, cfg.seed, progress=bar)
    mcfg = ModelConfig(arch=cfg.arch, image_size=cfg.image_size, n_mels=aud_p.n_mels, n_frames=aud_p.n_frames,
                       max_tokens=txt_p.max_tokens, vocab_size=len(txt_p.vocab), n_events=len(scen.events),
                       n_actions=len(scen.actions))
    model = FusionNet(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_ds) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    tensors = {k: torch.from_numpy(v) for k, v in train_ds.feeds.items()}
    y_ev, y_act = torch.from_numpy(train_ds.y_events), torch.from_numpy(train_ds.y_action)
    bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()
    losses: list[float] = []
    with tqdm(total=cfg.epochs * steps_per_epoch, desc=f"train {cfg.scenario}/{cfg.arch}", unit="step",
              disable=not progress) as bar:
        for _epoch in range(cfg.epochs):
            model.train()
            order = rng.permutation(len(train_ds))
            for s in range(steps_per_epoch):
                idx = torch.from_numpy(order[s * cfg.batch_size : (s + 1) * cfg.batch_size])
                args = {k: tensors[k][idx] for k in INPUT_ORDER}
                present = args["present"].clone()
                present[:, 0] *= torch.from_numpy(rng.random(len(idx)) >= cfg.drop_image).float()
                present[:, 1] *= torch.from_numpy(rng.random(len(idx)) >= cfg.drop_audio).float()
                args["present"] = present
                ev, act = model(*(args[k] for k in INPUT_ORDER))
                loss = ce(act, y_act[idx]) + bce(ev, y_ev[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    train_s = time.perf_counter() - t_start
    metrics = _held_out_metrics(model, scen, builder, cfg, progress)
    metrics.update({
        "scenario": cfg.scenario, "arch": cfg.arch, "parameters": count_parameters(model),
        "train_seconds": round(train_s, 1), "train_config": asdict(cfg), "train_data_sha256": data_hash(train_ds),
        "final_loss": float(np.mean(losses[-50:])), "first_loss": float(np.mean(losses[:10])),
    })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    # Plain types only beside the tensors: load_checkpoint reads with weights_only=True.
    torch.save({
        "state_dict": model.state_dict(), "model_config": mcfg.to_dict(), "train_config": asdict(cfg),
        "inputs": input_specs(img_p, aud_p, txt_p), "events": list(scen.events), "actions": list(scen.actions),
        "metrics": metrics,
    }, ckpt)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return TrainResult(ckpt, metrics, losses)


def _held_out_metrics(model: nn.Module, scen: Any, builder: FeedBuilder, cfg: TrainConfig,
                      progress: bool) -> dict[str, Any]:
    seed = cfg.seed + EVAL_SEED_OFFSET
    with tqdm(total=2 * cfg.n_eval, desc="synthesize held-out", unit="sample", disable=not progress) as bar:
        normal = build_dataset(scen, builder, cfg.n_eval, seed, progress=bar)
        hard = build_dataset(scen, builder, cfg.n_eval, seed, hard=True, progress=bar)
    return {
        "eval_seed": seed,
        "held_out": evaluate(model, normal, scen.events),
        "held_out_hard": evaluate(model, hard, scen.events, ablate=False),
    }


def load_checkpoint(path: str | Path) -> tuple[FusionNet, dict[str, Any]]:
    """The model (eval mode) and the checkpoint dictionary.

    Loads with ``weights_only=True``: a checkpoint holds tensors and plain data (dicts,
    lists, tuples, str, int, float), so unpickling can never run code from a crafted file.
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's first line only advises weights_only=False; the line after it names the offending object
        reason = next((ln for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ExportError(f"{path}: refused to load the checkpoint: it holds objects other than tensors and plain "
                          f"data ({reason.strip()}); only checkpoints written by 'edgefusion train' load") from exc
    mc = dict(ck["model_config"])
    if "channels" not in mc:
        raise ExportError(f"{path}: checkpoint from an older model layout (no 'channels' in its model_config); "
                          "retrain it with 'edgefusion train'")
    mc["channels"] = tuple(mc["channels"])
    model = FusionNet(ModelConfig(**mc))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


def with_overrides(cfg: TrainConfig, **kw: Any) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in kw.items() if v is not None})
