"""Robustness of the shipped packages to real-world input changes, and false alarms on real recordings.

For each package, held-out samples of its scenario (``generate_samples`` at the training
seed + ``EVAL_SEED_OFFSET``) go through the package's own ``FeedBuilder`` and ONNX Runtime
(fp32), once clean and once per perturbation (:mod:`edgefusion.augment`): brightness +-40,
contrast x0.6, auto-exposure, a 16:9 crop (placed as training's are, so the truth
stays in view: centred for smart_home, top rows kept for driving, whose traffic lights hang
high; the row's name says which), JPEG q20, audio from an 8 kHz source, gain
-20 dB, and a real held-out background recording at 10 dB and 0 dB SNR. Each row reports
action accuracy and event macro-F1 and their change from clean, in points.

False alarms: every held-out corpus recording that is not one of the scenario's event
classes is cut into 1-s windows, scaled to a fixed level (``--levels-dbfs``, RMS over the
whole recording) and *mixed into event-free synthesized scenes* (held-out samples with no
audio event, their frame and command kept). Reported per audio event: the fraction of
windows on which it fires, beside the same scenes without the recording.

``--stage NAME=PACKAGE,confirm=LABEL[,scan=MS]`` measures false alarms and detections with a
stage confirming one event, as ``run --stage`` would (e.g. Silero VAD confirming ``speech``:
``--stage vad=runs/silero_vad,scan=32,confirm=speech``). The perturbation rows stay the
model's own; the report says on what share of the synthetic held-out windows with that event
the stage finds it (the generator's sounds are not real ones).

Writes JSON (default bench/results/robustness.json) and a Markdown table beside it.
Needs the prepared corpus (``python -m export.corpus prepare``).

    python bench/robustness.py [--packages smart_home driving] [--samples 1000] [--corpus runs/corpus]
    python bench/robustness.py --quick   # a few samples: checks that it runs
    python bench/robustness.py --packages smart_home --stage vad=runs/silero_vad,scan=32,confirm=speech \
        --out bench/results/robustness_vad.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion import augment as aug
from edgefusion.backends import open_backend
from edgefusion.benchmark.report import machine_facts, save_json_and_markdown
from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.metrics import action_accuracy, event_f1, sigmoid
from edgefusion.package import ModelPackage, load_package
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import EVAL_SEED_OFFSET, LabeledSample, generate_samples, get_scenario
from edgefusion.stages import Stage, StageSpec, open_stages
from export.augmented import bench_crop
from export.corpus import DEFAULT_CACHE, RATE, Recording, backgrounds_for, load_prepared

Audio = np.ndarray
Image = np.ndarray
BATCH = 64
FA_SEED_SHIFT = 7  # the false-alarm scenes come from another held-out seed than the rows' samples


@dataclass(frozen=True)
class Perturbation:
    """One row: what happens to the frame and/or the audio (``rng`` for the random parts)."""

    name: str
    image: Callable[[Image], Image] | None = None
    audio: Callable[[Audio, np.random.Generator], Audio] | None = None


def perturbations(backgrounds: Sequence[Recording], scenario: str = "smart_home") -> list[Perturbation]:
    """The rows of the table, in order (``backgrounds``: held-out recordings for the noise rows)."""
    crop_name, crop = bench_crop(scenario)

    def noise(snr_db: float) -> Callable[[Audio, np.random.Generator], Audio]:
        def f(a: Audio, rng: np.random.Generator) -> Audio:
            bg = backgrounds[int(rng.integers(len(backgrounds)))].audio
            return aug.clip(aug.mix_at_snr(a, bg, snr_db, rng))
        return f

    rows = [
        Perturbation("clean"),
        Perturbation("brightness +40", image=lambda im: aug.brightness(im, 40)),
        Perturbation("brightness -40", image=lambda im: aug.brightness(im, -40)),
        Perturbation("contrast x0.6", image=lambda im: aug.contrast(im, 0.6)),
        Perturbation("auto-exposure", image=aug.auto_exposure),
        Perturbation(crop_name, image=crop),
        Perturbation("JPEG q20", image=lambda im: aug.jpeg(im, 20)),
        Perturbation("8 kHz source", audio=lambda a, rng: aug.band_limit(a, RATE, 8000)),
        Perturbation("gain -20 dB", audio=lambda a, rng: aug.gain_db(a, -20.0)),
    ]
    if backgrounds:
        rows += [Perturbation("real noise SNR 10 dB", audio=noise(10.0)),
                 Perturbation("real noise SNR 0 dB", audio=noise(0.0))]
    return rows


class Model:
    """A package's feed builder and fp32 ONNX Runtime session, run in batches."""

    def __init__(self, pkg: ModelPackage, threads: int) -> None:
        self.pkg = pkg
        self.builder = pkg.feed_builder()
        self.backend = open_backend("onnxruntime", pkg, "fp32", threads=threads)
        self.events = pkg.output("multilabel_logits")
        self.actions = pkg.output("class_logits")

    def run(self, windows: Sequence[FusionWindow]) -> tuple[np.ndarray, np.ndarray]:
        """(event logits, action logits) for ``windows``."""
        ev, act = [], []
        for i in range(0, len(windows), BATCH):
            feeds, _ = self.builder.build(windows[i : i + BATCH])
            out = self.backend.infer(feeds)
            ev.append(out[self.events.name])
            act.append(out[self.actions.name])
        return np.concatenate(ev), np.concatenate(act)


def _truth(model: Model, samples: Sequence[LabeledSample]) -> tuple[np.ndarray, np.ndarray]:
    labels = list(model.events.labels)
    y_events = np.array([[1.0 if e in s.events else 0.0 for e in labels] for s in samples], np.float32)
    y_action = np.array([model.actions.labels.index(s.action) for s in samples])
    return y_events, y_action


def score_rows(model: Model, samples: Sequence[LabeledSample], rows: Sequence[Perturbation],
               seed: int) -> list[dict[str, Any]]:
    """Action accuracy and event F1 per row, with the change from the first (clean) row in points."""
    y_events, y_action = _truth(model, samples)
    out: list[dict[str, Any]] = []
    for r, row in enumerate(rows):
        windows = []
        for i, s in enumerate(samples):
            rng = np.random.default_rng([seed, r, i])
            image = row.image(s.image) if row.image else s.image
            audio = row.audio(s.audio, rng) if row.audio else s.audio
            windows.append(FusionWindow(t_ns=0, image=image, audio=audio, command=s.command))
        ev, act = model.run(windows)
        f1 = event_f1(ev, y_events, model.events.labels, model.events.threshold)
        res: dict[str, Any] = {"name": row.name, "action_accuracy": round(action_accuracy(act, y_action), 4),
               "event_macro_f1": round(f1["macro"], 4),
               "event_f1": {k: round(v, 4) for k, v in f1.items() if k != "macro"}}
        clean = out[0] if out else res
        res["delta_action_points"] = round(100 * (res["action_accuracy"] - clean["action_accuracy"]), 2)
        res["delta_f1_points"] = round(100 * (res["event_macro_f1"] - clean["event_macro_f1"]), 2)
        out.append(res)
        print(json.dumps({"package": model.pkg.name, **{k: v for k, v in res.items() if k != "event_f1"}}))
    return out


def recording_windows(recordings: Sequence[Recording], level_dbfs: float,
                      limit: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """1-s windows of each recording (the last one looped to full length) at RMS ``level_dbfs``."""
    windows, owners = [], []
    for rec in recordings:
        x = aug.gain_db(rec.audio, level_dbfs - aug.power_db(rec.audio))
        n = max(1, round(len(x) / RATE))
        looped = np.tile(x, -(-n * RATE // len(x)))
        for k in range(n):
            windows.append(looped[k * RATE : (k + 1) * RATE])
            owners.append(rec.id)
    if limit is not None:
        windows, owners = windows[:limit], owners[:limit]
    return windows, owners


def mixed_into_quiet_scenes(model: Model, recordings: Sequence[Recording], level_dbfs: float, seed: int,
                            audio_events: Sequence[str], limit: int | None = None,
                            stage: Stage | None = None) -> tuple[
        list[LabeledSample], np.ndarray, np.ndarray, list[str]]:
    """1-s windows of ``recordings`` at ``level_dbfs`` mixed into event-free held-out scenes of the package's
    scenario (frame and command kept): the scenes, event and action logits, and each window's recording.

    With a ``stage`` that confirms a label, that label's logit is set far below any threshold on the
    windows where the stage does not find it (as the runtime reads it, :mod:`edgefusion.stages`).
    """
    scenes, mixed, owners = quiet_mixes(model, recordings, level_dbfs, seed, audio_events, limit)
    if not mixed:
        return [], np.zeros((0, len(model.events.labels))), np.zeros((0, len(model.actions.labels))), []
    ev, act = run_confirmed(model, mixed, stage)
    return scenes, ev, act, owners


def quiet_mixes(model: Model, recordings: Sequence[Recording], level_dbfs: float, seed: int,
                audio_events: Sequence[str], limit: int | None = None) -> tuple[
        list[LabeledSample], list[FusionWindow], list[str]]:
    """The event-free scenes, the windows with ``recordings`` mixed into them, and each window's recording."""
    windows, owners = recording_windows(recordings, level_dbfs, limit)
    if not windows:
        return [], [], []
    scenario = get_scenario(model.pkg.manifest.scenario or model.pkg.name)
    scenes = _quiet_scenes(scenario, len(windows), seed, set(audio_events))
    mixed = [FusionWindow(t_ns=0, image=s.image, audio=aug.clip(s.audio + w), command=s.command)
             for s, w in zip(scenes, windows)]
    return scenes, mixed, owners


#: the logit a label gets where a confirming stage does not find it: below any threshold
VETOED_LOGIT = -30.0


def run_confirmed(model: Model, windows: Sequence[FusionWindow], stage: Stage | None) -> tuple[np.ndarray, np.ndarray]:
    """The model's event and action logits on ``windows``; with a ``stage`` that confirms a label, that
    label's logit set below any threshold where the stage does not find it (as the runtime reads it)."""
    ev, act = model.run(windows)
    if stage is not None and stage.spec.confirm is not None and len(windows):
        ev[~confirmed(stage, windows), model.events.labels.index(stage.spec.confirm)] = VETOED_LOGIT
    return ev, act


def confirmed(stage: Stage, windows: Sequence[FusionWindow]) -> np.ndarray:
    """Per window, whether ``stage`` finds its ``confirm`` label in it."""
    return np.array([stage.spec.confirm in stage.run(w)[0]["events"] for w in windows], bool)


def false_alarms(model: Model, audio_events: Sequence[str], recordings: Sequence[Recording],
                 levels_dbfs: Sequence[float], seed: int, limit: int | None = None,
                 stage: Stage | None = None) -> dict[str, Any]:
    """Per audio event, the share of 1-s windows of real recordings on which it fires."""
    idx = [model.events.labels.index(e) for e in audio_events]
    levels = []
    for level in levels_dbfs:
        scenes, ev, act, owners = mixed_into_quiet_scenes(model, recordings, level, seed, audio_events, limit, stage)
        clean = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command) for s in scenes]
        ev_clean, act_clean = run_confirmed(model, clean, stage)
        fired_clean = sigmoid(ev_clean[:, idx]) >= model.events.threshold
        fired = sigmoid(ev[:, idx]) >= model.events.threshold
        per_rec: dict[str, dict[str, int]] = {}
        for w, owner in enumerate(owners):
            d = per_rec.setdefault(owner, {"windows": 0, **dict.fromkeys(audio_events, 0)})
            d["windows"] += 1
            for j, e in enumerate(audio_events):
                d[e] += int(fired[w, j])
        levels.append({
            "level_dbfs": level, "windows": len(owners), "seconds": float(len(owners)),
            "fires": {e: round(float(fired[:, j].mean()), 4) for j, e in enumerate(audio_events)},
            "fires_without_recording": {e: round(float(fired_clean[:, j].mean()), 4)
                                        for j, e in enumerate(audio_events)},
            "action_changed": round(float(np.mean(np.argmax(act, axis=1) != np.argmax(act_clean, axis=1))), 4),
            "by_recording": {k: v for k, v in per_rec.items() if any(v[e] for e in audio_events)},
        })
        print(json.dumps({"package": model.pkg.name, "false_alarms_dbfs": level, "fires": levels[-1]["fires"]}))
    return {"mode": "recordings mixed into event-free synthesized scenes (frame and command kept)",
            "recordings": [r.id for r in recordings], "levels": levels}


def detections(model: Model, audio_events: Sequence[str], recordings: Sequence[Recording],
               levels_dbfs: Sequence[float], seed: int, limit: int | None = None,
               stage: Stage | None = None) -> dict[str, Any]:
    """Per held-out recording of one of the audio events (real speech, a real horn): the share of its 1-s
    windows, mixed into event-free scenes as in :func:`false_alarms`, on which that event fires.

    A recall on sounds the model never trained on; a window can fall in a pause between two sentences, so
    100% is not expected. Recordings of a source below 16 kHz are marked: the event may be learned wide-band.
    """
    mine = [r for r in recordings if r.role in audio_events]
    levels = []
    for level in levels_dbfs:
        _, ev, _, owners = mixed_into_quiet_scenes(model, mine, level, seed, audio_events, limit, stage)
        if not owners:
            break
        fired = sigmoid(ev) >= model.events.threshold
        role = {r.id: r.role for r in mine}
        hits = [bool(fired[w, model.events.labels.index(role[o])]) for w, o in enumerate(owners)]
        by_rec = {r.id: {"event": r.role, "source_rate": r.source_rate, "windows": owners.count(r.id),
                         "fires": sum(h for h, o in zip(hits, owners) if o == r.id)} for r in mine if r.id in owners}
        per_event = {e: [h for h, o in zip(hits, owners) if role[o] == e] for e in audio_events}
        levels.append({"level_dbfs": level, "windows": len(owners),
                       "recall": {e: round(float(np.mean(v)), 4) for e, v in per_event.items() if v},
                       "by_recording": by_rec})
    return {"mode": "held-out recordings of the audio events mixed into event-free synthesized scenes",
            "recordings": [r.id for r in mine], "levels": levels}


def _quiet_scenes(scenario: Any, n: int, seed: int, audio_events: set[str]) -> list[LabeledSample]:
    """``n`` held-out samples with no audio event (visual events and commands as they come)."""
    out: list[LabeledSample] = []
    gen = generate_samples(scenario, 50 * n + 100, seed=seed)
    for s in gen:
        if not s.events & audio_events:
            out.append(s)
            if len(out) == n:
                return out
    raise ConfigError(f"could not find {n} event-free scenes of '{scenario.name}'")


def bench_package(name: str, args: argparse.Namespace, heldout: Sequence[Recording]) -> dict[str, Any]:
    pkg = load_package(name)
    scenario = get_scenario(pkg.manifest.scenario or pkg.name)
    train_seed = int(pkg.manifest.provenance.get("seed", 0))
    seed = train_seed + EVAL_SEED_OFFSET if args.seed is None else args.seed
    backgrounds = backgrounds_for(heldout, scenario.events)
    model = Model(pkg, args.threads)
    t0 = time.perf_counter()
    samples = list(generate_samples(scenario, args.samples, seed=seed))
    rows = score_rows(model, samples, perturbations(backgrounds, scenario.name), seed)
    spec = getattr(args, "stage", None)  # fusion_vs_concat passes its own namespace
    specs = [spec] if spec is not None else []
    with open_stages(specs) as stages:
        stage = stages[0] if stages else None
        if stage is not None and stage.spec.confirm not in model.events.labels:
            raise ConfigError(f"--stage confirms {stage.spec.confirm!r}, which is not an event of {pkg.name} "
                              f"({', '.join(model.events.labels)})")
        fa = false_alarms(model, scenario.audio_events, backgrounds, args.levels_dbfs, seed + FA_SEED_SHIFT,
                          limit=args.fa_windows, stage=stage)
        det = detections(model, scenario.audio_events, heldout, args.levels_dbfs, seed + FA_SEED_SHIFT + 1,
                         limit=args.fa_windows, stage=stage)
        staged = _stage_report(stage, samples) if stage is not None else None
    return {"package": pkg.name, "path": str(pkg.path), "scenario": scenario.name, "variant": "fp32",
            "backend": "onnxruntime", "samples": len(samples), "seed": seed, "rows": rows, "false_alarms": fa,
            "detections": det, **({"stage": staged} if staged else {}),
            "noise_backgrounds": [r.id for r in backgrounds], "seconds": round(time.perf_counter() - t0, 1)}


def _stage_report(stage: Stage, samples: Sequence[LabeledSample]) -> dict[str, Any]:
    """The confirming stage, and the share of clean synthetic held-out windows with its label that it confirms."""
    label = stage.spec.confirm
    mine = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command) for s in samples if label in s.events]
    return {"spec": args_spec(stage.spec), "confirms": label, "synthetic_windows": len(mine),
            "synthetic_confirmed": round(float(confirmed(stage, mine).mean()), 4) if mine else None}


def args_spec(spec: StageSpec) -> str:
    """A stage spec as one ``--stage`` argument."""
    opts = [f"confirm={spec.confirm}"] + ([f"scan={spec.scan}", f"share={spec.share:g}"] if spec.scan else [])
    return ",".join([f"{spec.name}={spec.package}", *opts])


def markdown(report: dict[str, Any]) -> str:
    """The robustness table and the false-alarm table of every package."""
    lines = ["# Robustness (held-out samples, fp32, ONNX Runtime)", ""]
    for p in report["packages"]:
        lines += [f"## {p['package']} ({p['samples']} samples, seed {p['seed']})", ""]
        st = p.get("stage")
        if st:
            lines += [f"False alarms and detections with stage `{st['spec']}`: `{st['confirms']}` counts only where "
                      f"the stage finds it too. It finds it in {100 * (st['synthetic_confirmed'] or 0):.1f}% of the "
                      f"{st['synthetic_windows']} synthetic held-out windows with `{st['confirms']}` (the rows "
                      "below are the model's own).", ""]
        lines += ["| input | action accuracy | Δ points | event macro-F1 | Δ points |", "|---|---:|---:|---:|---:|"]
        for r in p["rows"]:
            lines.append(f"| {r['name']} | {100 * r['action_accuracy']:.1f}% | {r['delta_action_points']:+.1f} "
                         f"| {r['event_macro_f1']:.3f} | {r['delta_f1_points']:+.1f} |")
        fa = p["false_alarms"]
        lv = fa["levels"]
        lines += ["", f"False alarms: share of 1-s windows on which each audio event fires; {fa['mode']}; "
                      f"{lv[0]['windows'] if lv else 0} windows of held-out recordings "
                      "(in brackets: the same scenes without the recording).", "",
                  "| event | " + " | ".join(f"{x['level_dbfs']:g} dBFS" for x in lv) + " |",
                  "|---|" + "---:|" * len(lv)]
        for e in (lv[0]["fires"] if lv else {}):
            cells = (f"{100 * x['fires'][e]:.1f}% ({100 * x['fires_without_recording'][e]:.1f}%)" for x in lv)
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("| action changed | " + " | ".join(f"{100 * x['action_changed']:.1f}%" for x in lv) + " |")
        lines.append("")
        det = p.get("detections", {}).get("levels", [])
        if det:
            lines += ["Held-out real recordings of the audio events (never trained on), mixed the same way: share "
                      "of their windows on which their event fires (per recording: windows, source rate).", "",
                      "| recording | event | source | " + " | ".join(f"{x['level_dbfs']:g} dBFS" for x in det) + " |",
                      "|---|---|---:|" + "---:|" * len(det)]
            for rid, r in det[0]["by_recording"].items():
                cells = (f"{x['by_recording'][rid]['fires']}/{x['by_recording'][rid]['windows']}" for x in det)
                lines.append(f"| {rid} | {r['event']} | {r['source_rate'] / 1000:g} kHz | " + " | ".join(cells) + " |")
            for e in det[0]["recall"]:
                lines.append(f"| all | {e} | | " + " | ".join(f"{100 * x['recall'][e]:.1f}%" for x in det) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--samples", type=int, default=1000, help="held-out samples per package (default 1000)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CACHE, help="the prepared corpus (default runs/corpus)")
    ap.add_argument("--levels-dbfs", type=float, nargs="+", default=[-30.0, -20.0],
                    help="RMS level of the recordings in the false-alarm test (default -30 -20)")
    ap.add_argument("--fa-windows", type=int, default=None, help="at most this many false-alarm windows")
    ap.add_argument("--seed", type=int, default=None, help="held-out seed (default: training seed + EVAL_SEED_OFFSET)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="8 samples and 8 false-alarm windows: a smoke run")
    ap.add_argument("--stage", type=StageSpec.parse, default=None, metavar="NAME=PACKAGE,confirm=LABEL[,scan=MS]",
                    help="a stage that confirms one event in the false alarms and detections (e.g. "
                         "vad=runs/silero_vad,scan=32,confirm=speech)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/robustness.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.fa_windows = min(args.samples, 8), 8
    try:
        if args.samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {args.samples}")
        if args.stage is not None and args.stage.confirm is None:
            raise ConfigError("--stage: the bench applies a stage that confirms an event; add confirm=LABEL")
        heldout = load_prepared(args.corpus, split="heldout")
        report = {"benchmark": "robustness", "machine": machine_facts(), "corpus": str(args.corpus),
                  "quick": args.quick, "packages": [bench_package(p, args, heldout) for p in args.packages]}
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in report["packages"]:
        secs = min((lv["seconds"] for lv in p["false_alarms"]["levels"]), default=0.0)
        p["false_alarms"]["enough"] = secs >= 60.0
        if secs < 60.0 and not args.quick:
            print(f"warning: {p['package']}: only {secs:.0f} s of held-out recordings for false alarms (< 60 s)",
                  file=sys.stderr)
    save_json_and_markdown(report, args.out, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
