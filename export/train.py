"""Seeded CPU training of the reference models, with held-out, hard, robust and ablation metrics.

Training samples are synthesized by the scenario's generator and, by default, pass through
the real-world augmentation (:mod:`export.augmented`: real background recordings from the
prepared corpus, gain, 8 kHz sources, brightness, contrast, exposure, crops, JPEG, blur).
The held-out metrics stay on clean synthetic samples, so numbers remain comparable between
runs; ``held_out_robust`` puts the same held-out samples through a fixed perturbation set.

Example (a few steps, as the tests do)::

    from export.train import TrainConfig, train
    result = train(TrainConfig(scenario="smart_home", n_train=256, epochs=1, corpus=None), out_dir="runs/x")
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgefusion.augment import RandomAugment
from edgefusion.dataset import (
    INPUT_ORDER,
    build_dataset,
    data_hash,
    input_specs,
    intent_labels,
    make_params,
    stack_feeds,
)
from edgefusion.errors import ConfigError, ExportError
from edgefusion.preprocess import AudioParams, FeedBuilder, HashedParams, ImageParams, TextParams
from edgefusion.scenarios import EVAL_SEED_OFFSET, Scenario, get_scenario
from export.augmented import (
    NO_BACKGROUNDS,
    Backgrounds,
    build_augmented,
    load_backgrounds,
    load_event_recordings,
    robust_rows,
    robust_windows,
    training_policy,
)
from export.corpus_sources import espeak_version
from export.evaluate import evaluate, predict, robust_metrics
from export.model import FusionNet, ModelConfig, count_parameters
from export.music import music_clips
from export.spoken import RATE as SPOKEN_RATE
from export.spoken import spoken_clips

__all__ = ["TrainConfig", "TrainResult", "evaluate", "fit", "load_checkpoint", "model_config", "predict", "train"]

MUSIC_SECONDS = 8.0


@dataclass(frozen=True)
class TrainConfig:
    """What a synthetic training run does; recorded in the checkpoint and the package's provenance.

    ``augment`` runs every training sample through the real-world augmentation with the
    background recordings of the prepared corpus at ``corpus`` (None: augment without real
    backgrounds).
    """

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
    augment: bool = True
    corpus: str | None = "runs/corpus"
    #: procedural music clips (:mod:`export.music`, 8 s each) that join the backgrounds when augmenting
    music: int = 24
    #: espeak-ng clips (:mod:`export.spoken`): real ``speech`` recordings for a task with that event, else backgrounds
    spoken: int = 0
    #: the chance a training window gets a real recording of one of its audio events (``AugmentPolicy.p_real_event``)
    real_events: float = 0.0


def model_config(arch: str, img: ImageParams, aud: AudioParams, txt: TextParams | HashedParams, n_events: int,
                 n_actions: int, n_intents: int) -> ModelConfig:
    """The reference model's configuration for this preprocessing and these label counts."""
    if isinstance(txt, HashedParams):
        text, vocab, grams = "hashed_ngrams", txt.buckets, txt.max_ngrams
    else:
        text, vocab, grams = "tokens", len(txt.vocab), 0
    return ModelConfig(arch=arch, image_size=img.size, n_mels=aud.n_mels, n_frames=aud.n_frames,
                       max_tokens=txt.max_tokens, vocab_size=vocab, n_events=n_events, n_actions=n_actions,
                       text=text, max_ngrams=grams, n_intents=n_intents)


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, Any]
    losses: list[float] = field(default_factory=list)


def fit(model: FusionNet, feeds: dict[str, np.ndarray], y_events: np.ndarray, y_action: np.ndarray,
        cfg: TrainConfig, rng: np.random.Generator, steps: int | None = None, frozen: Sequence[nn.Module] = (),
        desc: str = "train", progress: bool = True, y_intent: np.ndarray | None = None) -> list[float]:
    """Train ``model`` in place (AdamW, one-cycle schedule, modality dropout); returns the loss per step.

    ``steps`` stops after that many steps in all (default: ``cfg.epochs`` epochs). Modules
    in ``frozen`` get no updates and stay in eval mode (their BatchNorm statistics too).
    With an intent head, ``y_intent`` (index into the intent labels, -1: unlabelled) trains it.
    """
    n = len(y_action)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch if steps is None else steps
    if total < 1:
        raise ExportError(f"training needs at least one step; got {total}")
    for m in frozen:
        m.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    y_ev, y_act = torch.from_numpy(y_events), torch.from_numpy(y_action)
    intents = model.cfg.n_intents > 0
    if intents and (y_intent is None or len(y_intent) != n):
        raise ExportError("the model has an intent head but the training set has no intent labels")
    y_int = torch.from_numpy(y_intent if y_intent is not None else np.zeros(n, np.int64))
    bce, ce, ce_int = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss(), nn.CrossEntropyLoss(ignore_index=-1)
    losses: list[float] = []
    with tqdm(total=total, desc=desc, unit="step", disable=not progress) as bar:
        while len(losses) < total:
            model.train()
            for m in frozen:
                m.eval()
            order = rng.permutation(n)
            for s in range(min(steps_per_epoch, total - len(losses))):
                idx = torch.from_numpy(order[s * cfg.batch_size : (s + 1) * cfg.batch_size])
                args = {k: tensors[k][idx] for k in INPUT_ORDER}
                present = args["present"].clone()
                present[:, 0] *= torch.from_numpy(rng.random(len(idx)) >= cfg.drop_image).float()
                present[:, 1] *= torch.from_numpy(rng.random(len(idx)) >= cfg.drop_audio).float()
                args["present"] = present
                ev, act, *rest = model(*(args[k] for k in INPUT_ORDER))
                loss = ce(act, y_act[idx]) + bce(ev, y_ev[idx])
                if intents and bool((y_int[idx] >= 0).any()):
                    loss = loss + ce_int(rest[0], y_int[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", refresh=False)  # shown at the next update
    return losses


def augmenter(cfg: TrainConfig, scen: Scenario) -> tuple[RandomAugment | None, dict[str, Any]]:
    """The training augmentation of ``cfg`` (None when off) and what the checkpoint records about it."""
    if not cfg.augment:
        return None, {"enabled": False}
    bg = load_backgrounds(cfg.corpus, scen.events, "train")
    policy = training_policy(scen.name)
    if cfg.real_events:
        policy = replace(policy, p_real_event=cfg.real_events)
    real = load_event_recordings(cfg.corpus, scen.audio_events, "train") if policy.p_real_event else {}
    info = {"enabled": True, "policy": asdict(policy), "backgrounds": bg.describe()}
    music = music_clips(cfg.music, MUSIC_SECONDS, seed=cfg.seed) if cfg.music > 0 else []
    if music:
        info["music"] = {"clips": len(music), "seconds_each": MUSIC_SECONDS, "seed": cfg.seed, "source": "export.music"}
    as_event = "speech" in scen.audio_events and policy.p_real_event > 0
    if cfg.spoken > 0 and "speech" in scen.audio_events and not as_event:
        raise ConfigError(f"--spoken {cfg.spoken}: '{scen.name}' has a 'speech' event, so the clips are speech "
                          "recordings inserted into windows; say how often with --real-events P (e.g. 0.1)")
    spoken = spoken_clips(cfg.spoken, seed=cfg.seed) if cfg.spoken > 0 else []
    if spoken:
        info["spoken"] = {"clips": len(spoken), "seed": cfg.seed, "source": "export.spoken", "espeak": espeak_version(),
                          "seconds": round(sum(len(x) for x in spoken) / SPOKEN_RATE, 1),
                          "role": "speech" if as_event else "background"}
        if as_event:
            real = {**real, "speech": (*real.get("speech", ()), *spoken)}
    if policy.p_real_event > 0 and not real:
        raise ConfigError(f"--real-events {policy.p_real_event:g}: nothing to insert: the corpus has no wide-band "
                          f"'train' recording of {', '.join(scen.audio_events) or 'an audio event'} of '{scen.name}'"
                          + (" and --spoken is 0" if "speech" in scen.audio_events else ""))
    if real:
        info["real_events"] = {e: len(v) for e, v in real.items()}
    backgrounds = [*bg.audio, *music, *([] if as_event else spoken)]
    return RandomAugment(policy, backgrounds, events=real), info


def train(cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> TrainResult:
    """Train, evaluate on held-out data, write ``checkpoint.pt`` and ``metrics.json``."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    scen = get_scenario(cfg.scenario)
    aug, aug_info = augmenter(cfg, scen)  # before synthesis: a missing corpus fails at once
    img_p, aud_p, txt_p = make_params(scen, cfg.seed, cfg.image_size)
    builder = FeedBuilder(input_specs(img_p, aud_p, txt_p))
    with tqdm(total=cfg.n_train, desc="synthesize train" + (" (augmented)" if aug else ""), unit="sample",
              disable=not progress) as bar:
        train_ds = (build_augmented(scen, builder, cfg.n_train, cfg.seed, aug, progress=bar) if aug
                    else build_dataset(scen, builder, cfg.n_train, cfg.seed, progress=bar))
    mcfg = model_config(cfg.arch, img_p, aud_p, txt_p, len(scen.events), len(scen.actions),
                        len(intent_labels(scen.intents)))
    model = FusionNet(mcfg)
    losses = fit(model, train_ds.feeds, train_ds.y_events, train_ds.y_action, cfg, rng,
                 desc=f"train {cfg.scenario}/{cfg.arch}", progress=progress, y_intent=train_ds.y_intent)
    train_s = time.perf_counter() - t_start
    metrics = held_out_metrics(model, scen, builder, cfg, progress)
    metrics.update({
        "scenario": cfg.scenario, "arch": cfg.arch, "parameters": count_parameters(model),
        "train_seconds": round(train_s, 1), "train_config": asdict(cfg), "train_data_sha256": data_hash(train_ds),
        "final_loss": float(np.mean(losses[-50:])), "first_loss": float(np.mean(losses[:10])),
        "augment": aug_info,
    })
    ckpt = save_checkpoint(out_dir, model, mcfg, asdict(cfg), input_specs(img_p, aud_p, txt_p), scen.events,
                           scen.actions, metrics, intents=list(intent_labels(scen.intents)))
    return TrainResult(ckpt, metrics, losses)


def save_checkpoint(out_dir: str | Path, model: FusionNet, mcfg: ModelConfig, train_config: dict[str, Any],
                    inputs: list[tuple[str, dict[str, Any]]], events: Sequence[str], actions: Sequence[str],
                    metrics: dict[str, Any], **extra: Any) -> Path:
    """Write ``checkpoint.pt`` and ``metrics.json`` into ``out_dir``; returns the checkpoint's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    # Plain types only beside the tensors: load_checkpoint reads with weights_only=True.
    torch.save({
        "state_dict": model.state_dict(), "model_config": mcfg.to_dict(), "train_config": train_config,
        "inputs": inputs, "events": list(events), "actions": list(actions), "metrics": metrics, **extra,
    }, ckpt)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return ckpt


def held_out_metrics(model: nn.Module, scen: Scenario, builder: FeedBuilder, cfg: TrainConfig,
                     progress: bool) -> dict[str, Any]:
    """Clean held-out and hard metrics (as always), and the robust held-out metric."""
    seed = cfg.seed + EVAL_SEED_OFFSET
    with tqdm(total=3 * cfg.n_eval, desc="synthesize held-out", unit="sample", disable=not progress) as bar:
        normal = build_dataset(scen, builder, cfg.n_eval, seed, progress=bar)
        hard = build_dataset(scen, builder, cfg.n_eval, seed, hard=True, progress=bar)
        robust = _robust_set(scen, builder, cfg, seed, bar)
    clean = evaluate(model, normal, scen.events)
    feeds, which, names, bg = robust
    return {
        "eval_seed": seed,
        "held_out": clean,
        "held_out_hard": evaluate(model, hard, scen.events, ablate=False),
        "held_out_robust": {**robust_metrics(model, feeds, normal, which, names, scen.events,
                                             clean["action_accuracy"]),
                            "backgrounds": bg.describe()},
    }


def _robust_set(scen: Scenario, builder: FeedBuilder, cfg: TrainConfig, seed: int,
                bar: Any) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], Backgrounds]:
    """The robust held-out feeds: held-out background recordings when the corpus is there."""
    corpus = Path(cfg.corpus) if cfg.corpus else None
    bg = (load_backgrounds(corpus, scen.events, "heldout") if corpus and (corpus / "provenance.json").is_file()
          else NO_BACKGROUNDS)
    rows = robust_rows(scen.name, bg)
    wins, which = robust_windows(scen, cfg.n_eval, seed, rows)
    return stack_feeds(wins, builder, bar), which, [r.name for r in rows], bg


def load_checkpoint(path: str | Path) -> tuple[FusionNet, dict[str, Any]]:
    """The model (eval mode) and the checkpoint dictionary.

    Loads with ``weights_only=True``: a checkpoint holds tensors and plain data (dicts,
    lists, tuples, str, int, float), so unpickling can never run code from a crafted file.
    """
    if not Path(path).is_file():
        raise ExportError(f"{path}: no such checkpoint; give the checkpoint.pt that 'edgefusion train' wrote "
                          "(in its --out directory)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as exc:  # a truncated or foreign file: torch's own words, one line
        raise ExportError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200]})") from exc
    except pickle.UnpicklingError as exc:
        # torch's first line only advises turning weights_only off; the line after it names the offending object
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


