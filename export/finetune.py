"""Training on a task: recorded datasets, mixed with the task's synthetic samples, optionally from a package.

``edgefusion train --task TASK --data DIR... [--init PACKAGE] [--freeze image,audio,text]``
runs :func:`train_task`. The recorded windows come from the datasets' ``train`` split
(already preprocessed, so they are not augmented); when the task has a synthetic generator
(:func:`export.task_data.generator_for`), augmented synthetic samples make up
``synthetic_fraction`` of the training set. ``--init`` starts from a package's checkpoint and
keeps the package's preprocessing (image size, log-mel parameters, vocabulary), so the
dataset's feeds must be cut with that package's preprocessing; the task's labels must be
the package's outputs, in order. Validation runs on the datasets' ``val`` split: per-label
precision and recall, action accuracy, the confusion matrix (and its PNG), per recording.

Example (as the tests do)::

    from export.finetune import TaskTrainConfig, train_task
    res = train_task(TaskTrainConfig(task="smart_home", data=("data/home",), init="smart_home", steps=5), "runs/ft")
"""

from __future__ import annotations

import hashlib
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgefusion.dataset import INPUT_ORDER, Dataset, data_hash, input_specs, intent_labels, make_params
from edgefusion.errors import ConfigError, InputError
from edgefusion.package import ModelPackage, load_package
from edgefusion.preprocess import AudioParams, FeedBuilder, HashedParams, ImageParams, text_params
from edgefusion.scenarios import Scenario
from edgefusion.task import Task, load_task
from export.augmented import build_augmented
from export.evaluate import confusion_png, label_report, predict
from export.model import FusionNet, count_parameters
from export.task_data import RecordedData, check_labels, generator_for, load_recorded, same_inputs
from export.text_warmup import warm_text
from export.train import (
    TrainConfig,
    TrainResult,
    augmenter,
    fit,
    held_out_metrics,
    load_checkpoint,
    model_config,
    save_checkpoint,
)
from export.warmstart import grows, load_matching

__all__ = ["ENCODERS", "FINETUNE_LR", "TaskTrainConfig", "freeze", "train_command", "train_task"]

#: ``--freeze`` names -> the FusionNet attributes that make up each encoder
ENCODERS: dict[str, tuple[str, ...]] = {"image": ("image_enc",), "audio": ("audio_front", "gru"),
                                        "text": ("embed", "pos", "text_block")}
FINETUNE_LR = 5e-4  # from a trained package: a fifth of the from-scratch peak, so it adapts without forgetting
SCRATCH_SAMPLES = 12000  # synthetic samples when a task with a generator is trained without --data


@dataclass(frozen=True)
class TaskTrainConfig:
    """A task training run (see the module docstring); recorded in the checkpoint as ``train_config``.

    ``samples`` is the number of synthetic samples (default: ``synthetic_fraction`` of the
    training set beside the recorded windows, or 12000 without ``data``); ``steps`` stops
    after that many optimizer steps (default ``epochs`` epochs); ``lr`` defaults to
    :data:`FINETUNE_LR` with ``init`` and 2e-3 without.
    """

    task: str
    data: tuple[str, ...] = ()
    init: str | None = None
    freeze: tuple[str, ...] = ()
    synthetic_fraction: float = 0.5
    samples: int | None = None
    steps: int | None = None
    arch: str = "attention"
    seed: int = 0
    n_eval: int = 2000
    epochs: int = 8
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 1e-2
    drop_image: float = 0.1
    drop_audio: float = 0.1
    threads: int = 2
    image_size: int = 96
    augment: bool = True
    corpus: str | None = "runs/corpus"
    #: procedural music clips that join the augmentation's backgrounds (:mod:`export.music`)
    music: int = TrainConfig.music
    #: espeak-ng clips (:mod:`export.spoken`): ``speech`` recordings for a task with that event, else backgrounds
    spoken: int = TrainConfig.spoken
    #: the chance a window gets a real recording of one of its audio events (with ``spoken``: the clips)
    real_events: float = TrainConfig.real_events
    #: with ``init``: a fresh open-vocabulary text input (hashed n-grams) instead of the package's
    new_text: bool = False
    #: with ``new_text``: steps of text-only warm-up of the text encoder and intent head (:mod:`export.text_warmup`)
    text_warmup: int = 2000

    def validate(self) -> None:
        bad = [f for f in self.freeze if f not in ENCODERS]
        if bad:
            raise ConfigError(f"--freeze {','.join(bad)}: the encoders are {', '.join(ENCODERS)}")
        if not 0.0 <= self.synthetic_fraction < 1.0:
            raise ConfigError(f"--synthetic-fraction is the synthetic share of the training set, in [0, 1); got "
                              f"{self.synthetic_fraction}")
        for flag, v in (("--steps", self.steps), ("--samples", self.samples)):
            if v is not None and v < (1 if flag == "--steps" else 0):
                raise ConfigError(f"{flag} must be positive, got {v}")
        if self.arch not in ("attention", "concat"):
            raise ConfigError(f"--arch must be 'attention' or 'concat', got {self.arch!r}")


def freeze(model: FusionNet, names: tuple[str, ...]) -> list[nn.Module]:
    """Stop gradients into the named encoders; returns their modules (kept in eval mode while training)."""
    modules = []
    for name in names:
        for attr in ENCODERS[name]:
            part = getattr(model, attr)
            part.requires_grad_(False)
            if isinstance(part, nn.Module):
                modules.append(part)
    return modules


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _from_package(cfg: TaskTrainConfig, task: Task, scen: Scenario | None) -> tuple[
        FusionNet, list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """A model warm-started from the package, its preprocessing, and what the provenance records about it.

    The task may add labels to the package's (new actions, a new intent head); their rows
    start fresh, as does the text encoder's embedding with ``new_text``. Every tensor that no
    longer fits is listed under ``reinitialised``.
    """
    pkg: ModelPackage = load_package(str(cfg.init))
    ev_p, act_p = pkg.output("multilabel_logits").labels, pkg.output("class_logits").labels
    if not (grows(task.event_names, ev_p) and grows(task.actions, act_p)):
        check_labels(task, ev_p, act_p, f"package '{pkg.name}' (--init)")
    rec = pkg.manifest.sources.get("checkpoint")
    if rec is None:
        raise ConfigError(f"package '{pkg.name}' has no training checkpoint (sources.checkpoint in its manifest), so "
                          "--init cannot start from it; export it from a checkpoint with 'edgefusion export'")
    path = pkg.file(rec)
    old, ck = load_checkpoint(path)
    inputs = [(i.name, dict(i.preprocess)) for i in pkg.inputs]
    if same_inputs(inputs, ck["inputs"]) is not None:
        raise ConfigError(f"package '{pkg.name}': the manifest's preprocessing differs from its checkpoint's "
                          f"({same_inputs(ck['inputs'], inputs)}); re-export the package from its checkpoint")
    if [n for n, _ in inputs] != list(INPUT_ORDER):
        raise ConfigError(f"package '{pkg.name}' has inputs {[n for n, _ in inputs]}; training fine-tunes the "
                          f"reference model, whose inputs are {list(INPUT_ORDER)}")
    if cfg.new_text:
        if scen is None:
            raise ConfigError(f"--new-text takes the known words from task '{task.name}''s generator, and it has none")
        inputs[2] = ("tokens", HashedParams(known=tuple(sorted(scen.grammar.words()))).to_dict())
    pre = dict(inputs)
    intents = intent_labels(task.intents) if task.intents else ()
    mcfg = model_config(old.cfg.arch, ImageParams.from_dict(pre["image"]), AudioParams.from_dict(pre["audio"]),
                        text_params(pre["tokens"]), len(task.event_names), len(task.actions), len(intents))
    model = FusionNet(mcfg)
    old_intents = tuple(ck.get("intents") or ()) if old.cfg.n_intents else ()
    reinit = load_matching(model, old.state_dict(), {"event_head": (ev_p, task.event_names),
                                                     "action_head": (act_p, task.actions),
                                                     "intent_head.3": (old_intents, intents)})
    info = {"package": pkg.name, "path": str(pkg.path), "manifest_sha256": _sha256(pkg.path / "manifest.json"),
            "checkpoint_sha256": rec.sha256, "arch": model.cfg.arch, "reinitialised": reinit}
    return model, inputs, info


def _from_scratch(cfg: TaskTrainConfig, task: Task, scen: Scenario | None) -> tuple[
        FusionNet, list[tuple[str, dict[str, Any]]]]:
    """A new model: the first dataset's preprocessing, else parameters derived from the generator."""
    if cfg.data:
        from edgefusion.dataset import read_manifest

        inputs = [(str(i["name"]), dict(i["preprocess"])) for i in read_manifest(cfg.data[0])["package"]["inputs"]]
        pre = {p.get("kind"): p for _, p in inputs}
        missing = sorted({"image", "logmel", "tokens"} - set(pre) - ({"tokens"} if "hashed_ngrams" in pre else set()))
        if missing:
            raise ConfigError(f"dataset {cfg.data[0]} has no {', '.join(missing)} input; the reference model "
                              "needs image, log-mel audio and tokens")
        text = pre["hashed_ngrams"] if "hashed_ngrams" in pre else pre["tokens"]
        img, aud, txt = ImageParams.from_dict(pre["image"]), AudioParams.from_dict(pre["logmel"]), text_params(text)
    elif scen is not None:
        img, aud, txt = make_params(scen, cfg.seed, cfg.image_size)
        inputs = input_specs(img, aud, txt)
    else:
        raise ConfigError(f"task '{task.name}' has no synthetic generator, so there is nothing to train on without "
                          "recorded data; give --data DIR (edgefusion dataset build)")
    n_intents = len(intent_labels(task.intents)) if task.intents else 0
    return FusionNet(model_config(cfg.arch, img, aud, txt, len(task.event_names), len(task.actions), n_intents)), inputs


def _synthetic_count(cfg: TaskTrainConfig, scen: Scenario | None, recorded: RecordedData | None) -> int:
    if scen is None:
        return 0
    if cfg.samples is not None:
        return cfg.samples
    if recorded is None:
        return SCRATCH_SAMPLES
    f = cfg.synthetic_fraction
    return round(recorded.n_train * f / (1.0 - f))


def train_command(cfg: TaskTrainConfig, lr: float) -> str:
    """The ``edgefusion train`` command line that reproduces a task training run.

    Example:
        >>> cmd = train_command(TaskTrainConfig(task="smart_home", data=("d",), init="smart_home", steps=5), 5e-4)
        >>> cmd.split(" --synthetic")[0]
        'edgefusion train --task smart_home --data d --init smart_home'
        >>> cmd.split("0.5 ")[1]
        '--steps 5 --arch attention --seed 0 --epochs 8 --lr 0.0005 --threads 2'
    """
    q = shlex.quote
    parts = ["edgefusion train --task", q(cfg.task)]
    parts += ["--data", *map(q, cfg.data)] if cfg.data else []
    parts += ["--init", q(cfg.init)] if cfg.init else []
    parts += ["--freeze", ",".join(cfg.freeze)] if cfg.freeze else []
    parts += ["--new-text", "--text-warmup", str(cfg.text_warmup)] if cfg.new_text else []
    parts += ["--synthetic-fraction", f"{cfg.synthetic_fraction:g}"]
    parts += ["--samples", str(cfg.samples)] if cfg.samples is not None else []
    parts += ["--steps", str(cfg.steps)] if cfg.steps is not None else []
    parts += ["--arch", cfg.arch, "--seed", str(cfg.seed), "--epochs", str(cfg.epochs), "--lr", f"{lr:g}",
              "--threads", str(cfg.threads)]
    if not cfg.augment:
        parts.append("--no-augment")
    elif cfg.corpus is None:
        parts.append("--no-real-backgrounds")
    elif cfg.corpus != "runs/corpus":
        parts += ["--corpus", q(cfg.corpus)]
    if cfg.augment and cfg.music != TrainConfig.music:
        parts += ["--music", str(cfg.music)]
    if cfg.augment and cfg.spoken:
        parts += ["--spoken", str(cfg.spoken)]
    if cfg.augment and cfg.real_events:
        parts += ["--real-events", f"{cfg.real_events:g}"]
    return " ".join(parts)


def train_task(cfg: TaskTrainConfig, out_dir: str | Path, progress: bool = True) -> TrainResult:
    """Train (or fine-tune) on ``cfg.task``; write ``checkpoint.pt``, ``metrics.json`` and the confusion PNG."""
    cfg.validate()
    t_start = time.perf_counter()
    task = load_task(cfg.task)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    scen = generator_for(task)
    init_info = None
    if cfg.init:
        model, inputs, init_info = _from_package(cfg, task, scen)
    else:
        model, inputs = _from_scratch(cfg, task, scen)
    builder = FeedBuilder(inputs)
    recorded = load_recorded(cfg.data, task, inputs) if cfg.data else None
    lr = cfg.lr if cfg.lr is not None else FINETUNE_LR if cfg.init else TrainConfig.lr
    hp = TrainConfig(scenario=scen.name if scen else task.name, arch=model.cfg.arch, seed=cfg.seed, n_eval=cfg.n_eval,
                     epochs=cfg.epochs, batch_size=cfg.batch_size, lr=lr, weight_decay=cfg.weight_decay,
                     drop_image=cfg.drop_image, drop_audio=cfg.drop_audio, threads=cfg.threads,
                     augment=cfg.augment, corpus=cfg.corpus, music=cfg.music, spoken=cfg.spoken,
                     real_events=cfg.real_events)
    if cfg.init and cfg.new_text and scen is not None and cfg.text_warmup > 0:
        warm = warm_text(model, scen, text_params(dict(inputs)["tokens"]), cfg.text_warmup, TrainConfig.lr, cfg.seed,
                         progress=progress)
        if init_info is not None:
            init_info["text_warmup"] = warm
    n_syn = _synthetic_count(cfg, scen, recorded)
    feeds, y_ev, y_act, y_int, aug_info = _training_set(recorded, scen, builder, n_syn, hp, progress, task)
    if len(y_act) == 0:
        raise InputError(f"the training set is empty: the dataset(s) {', '.join(cfg.data)} have no 'train' window "
                         + ("and --synthetic-fraction is 0" if scen else f"and task '{task.name}' has no generator"))
    losses = fit(model, feeds, y_ev, y_act, hp, rng, steps=cfg.steps, frozen=freeze(model, cfg.freeze),
                 desc=f"train {task.name}/{model.cfg.arch}", progress=progress, y_intent=y_int)
    train_s = time.perf_counter() - t_start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"task": task.name}
    if init_info is not None:
        metrics["init_reinitialised"] = init_info["reinitialised"]
        if "text_warmup" in init_info:
            metrics["text_warmup"] = init_info["text_warmup"]
    if recorded is not None:
        metrics["val"] = _validate(model, recorded, task, out)
    if scen is not None and cfg.n_eval > 0:
        metrics.update(held_out_metrics(model, scen, builder, hp, progress))
    metrics.update({
        "scenario": scen.name if scen else None, "arch": model.cfg.arch, "parameters": count_parameters(model),
        "train_seconds": round(train_s, 1), "steps": len(losses),
        "train_windows": {"recorded": recorded.n_train if recorded else 0, "synthetic": n_syn},
        "train_data_sha256": data_hash(Dataset(feeds, y_ev, y_act, y_int)),
        "final_loss": float(np.mean(losses[-50:])), "first_loss": float(np.mean(losses[:10])), "augment": aug_info,
    })
    train_config = {**asdict(cfg), "scenario": scen.name if scen else None, "arch": model.cfg.arch, "lr": lr,
                    "n_train": len(y_act), "data": list(cfg.data), "freeze": list(cfg.freeze)}
    metrics["train_config"] = train_config
    source = Path(task.source)
    provenance = {"task": {"name": task.name, "source": task.source,
                           "sha256": _sha256(source) if source.is_file() else "",
                           # the spec itself, so that export packs it (a user's task.toml stays on their machine)
                           "text": source.read_text(encoding="utf-8") if source.is_file() else ""},
                  "datasets": recorded.sources if recorded else [], "init": init_info,
                  "command": train_command(cfg, lr)}
    intents = list(intent_labels(task.intents)) if model.cfg.n_intents else []
    ckpt = save_checkpoint(out, model, model.cfg, train_config, inputs, task.event_names, task.actions, metrics,
                           provenance=provenance, intents=intents)
    return TrainResult(ckpt, metrics, losses)


def _training_set(recorded: RecordedData | None, scen: Scenario | None, builder: FeedBuilder, n_syn: int,
                  hp: TrainConfig, progress: bool, task: Task) -> tuple[
        dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Recorded train windows followed by ``n_syn`` augmented synthetic samples.

    Intent labels index :func:`intent_labels` of the task's intents (a recorded window
    without a command is ``none``).
    """
    parts_f: list[dict[str, np.ndarray]] = []
    parts_e, parts_a, parts_i = [], [], []
    aug_info: dict[str, Any] = {"enabled": False}
    if recorded is not None and recorded.n_train:
        parts_f.append({k: recorded.train[k] for k in INPUT_ORDER})
        parts_e.append(recorded.train["events"].astype(np.float32))
        parts_a.append(recorded.train["action"].astype(np.int64))
        it = recorded.train["intent"].astype(np.int64)
        parts_i.append(np.where(it < 0, len(task.intents), it))
    if scen is not None and n_syn > 0:
        aug, aug_info = augmenter(hp, scen)
        with tqdm(total=n_syn, desc="synthesize train" + (" (augmented)" if aug else ""), unit="sample",
                  disable=not progress) as bar:
            syn = build_augmented(scen, builder, n_syn, hp.seed, aug, progress=bar)
        parts_f.append(syn.feeds)
        parts_e.append(syn.y_events)
        parts_a.append(syn.y_action)
        parts_i.append(syn.y_intent if syn.y_intent is not None else np.full(len(syn), -1, np.int64))
    if not parts_f:
        return {}, np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), aug_info
    for k in INPUT_ORDER:
        kinds = {(p[k].dtype.str, p[k].shape[1:]) for p in parts_f}
        if len(kinds) > 1:
            raise ConfigError(f"recorded and synthetic '{k}' feeds differ ({sorted(kinds)}); the dataset was cut with "
                              "other preprocessing than the model's")
    feeds = {k: np.concatenate([p[k] for p in parts_f]) for k in INPUT_ORDER}
    return feeds, np.concatenate(parts_e), np.concatenate(parts_a), np.concatenate(parts_i), aug_info


def _validate(model: FusionNet, recorded: RecordedData, task: Task, out: Path) -> dict[str, Any]:
    """The evaluation report on the datasets' val split (None-valued when it has no window)."""
    if recorded.n_val == 0:
        return {"samples": 0, "note": "the dataset(s) have no val window (give at least two labelled recordings)"}
    v = recorded.val
    ev, act = predict(model, {k: v[k] for k in INPUT_ORDER})
    names = np.array([recorded.recording_names.get(str(r), str(r)[:12]) for r in v["recording"]])
    report = label_report(ev, act, v["events"], v["action"].astype(np.int64), task.event_names, task.actions, names)
    png = confusion_png(report, out / "confusion_val.png", f"{task.name}: val actions ({report['samples']} windows)")
    report["confusion_png"] = png.name if png else None
    return report
