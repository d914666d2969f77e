"""Synthetic training data through real-world augmentation, and the robust held-out set.

Training samples of a scenario pass through :class:`edgefusion.augment.RandomAugment`
(real background recordings from the corpus' ``train`` split, gain, band-limiting,
brightness, contrast, exposure, white balance, crops, JPEG, blur) *before* preprocessing,
so the model sees what a real camera and microphone deliver. Labels stay as they are, so
every perturbation must keep the truth true:

- a background recording of one of the scenario's event classes (a real horn for
  ``driving``) would be an unlabelled event: :func:`export.corpus.backgrounds_for` leaves
  those out;
- a crop can cut an object out of the frame: a square crop removes the frame's sides
  (where people, doors and traffic lights stand), and a centred 16:9 crop removes the top
  rows where about a quarter of ``driving``'s red lights hang. :func:`training_policy` keeps
  the crops that leave every event in view (:data:`SAFE_ASPECTS`, placed by
  :data:`SAFE_ANCHOR_Y`: ``driving``'s wide crops keep the top rows, as a dashcam tilted
  to see traffic lights does);
- a loud background can mask an audio event: only windows without one get backgrounds
  louder than the scene (``AugmentPolicy.snr_db_no_event``), which teaches that a loud radio
  or ringtone in a quiet room is no event;
- the rest keep the meaning by construction: a dark room under auto-exposure is still a
  dark room, an 8 kHz source keeps the smoke alarm's 3.1 kHz, clipping keeps a horn a horn.

Each sample is augmented with its own generator (``seed``, a stream id, the sample index),
so a training set is a pure function of its seed and the background recordings.

The robust held-out set (:func:`robust_windows`) puts the clean held-out samples through a
fixed set of perturbations, one per sample in turn (the robustness bench's rows, with the
label-safe crop and held-out background recordings), so ``metrics.json`` shows how a run
holds up without running the bench.

Example:
    >>> from edgefusion.package import load_package
    >>> from edgefusion.scenarios import get_scenario
    >>> scen, builder = get_scenario("smart_home"), load_package("smart_home").feed_builder()
    >>> ds = build_augmented(scen, builder, 4, seed=1, augment=RandomAugment(training_policy("smart_home")))
    >>> len(ds), ds.feeds["image"].shape[1:]
    (4, (3, 96, 96))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion import augment as aug
from edgefusion.augment import AugmentPolicy, RandomAugment
from edgefusion.dataset import NO_INTENT, Dataset, intent_labels, stack_feeds
from edgefusion.errors import ConfigError
from edgefusion.preprocess import FeedBuilder
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import LabeledSample, Scenario, generate_samples

__all__ = [
    "AUGMENT_STREAM",
    "SAFE_ANCHOR_Y",
    "SAFE_ASPECTS",
    "Backgrounds",
    "RobustRow",
    "bench_crop",
    "build_augmented",
    "load_backgrounds",
    "load_event_recordings",
    "robust_rows",
    "robust_windows",
    "training_policy",
]

AUGMENT_STREAM = 11  # the augmentation's random stream, apart from the generator's own
RATE = 16000

#: crops (width / height) that leave every event of the scenario in the frame. The frames are
#: 4:3; a centred 16:9 crop cuts 15 rows at the top and bottom (a red light hangs as high as
#: row 4 in ``driving``: measured, a centred 16:9 crop takes away >= 26% of its red lights, 3:2
#: none); 1:1 cuts the sides.
SAFE_ASPECTS: dict[str, tuple[float, ...]] = {"smart_home": (16 / 9, 3 / 2), "driving": (16 / 9, 3 / 2)}
DEFAULT_ASPECTS: tuple[float, ...] = (3 / 2,)
#: where those crops sit vertically (0 = the top rows kept, 0.5 = centred), drawn uniformly from the
#: range. ``driving`` keeps the top: its traffic lights hang at rows 4-28 and nothing labelled
#: lives only in the bottom 30 rows (a pedestrian's feet, the road under a close vehicle's bumper).
SAFE_ANCHOR_Y: dict[str, tuple[float, float]] = {"smart_home": (0.5, 0.5), "driving": (0.0, 0.1)}
DEFAULT_ANCHOR_Y: tuple[float, float] = (0.5, 0.5)


def training_policy(scenario: str) -> AugmentPolicy:
    """The augmentation policy training uses for ``scenario``: the defaults, with label-safe crops.

    Example:
        >>> [round(a, 2) for a in training_policy("driving").aspects], training_policy("driving").crop_anchor_y
        ([1.78, 1.5], (0.0, 0.1))
    """
    return replace(AugmentPolicy(), aspects=SAFE_ASPECTS.get(scenario, DEFAULT_ASPECTS),
                   crop_anchor_y=SAFE_ANCHOR_Y.get(scenario, DEFAULT_ANCHOR_Y))


def bench_crop(scenario: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The robustness table's 16:9 row for ``scenario``: its name and the crop, placed as training's are.

    A centred 16:9 crop would take ``driving``'s traffic light out of view while the truth keeps
    ``red_light``; the row crops where training does (the top rows kept) and says so in its name.

    Example:
        >>> bench_crop("smart_home")[0], bench_crop("driving")[0]
        ('16:9 crop', '16:9 crop (top-aligned)')
    """
    anchor = SAFE_ANCHOR_Y.get(scenario, DEFAULT_ANCHOR_Y)[0]
    where = "" if anchor == 0.5 else " (top-aligned)" if anchor == 0.0 else f" (anchor {anchor:g})"
    return f"16:9 crop{where}", lambda im: aug.crop_aspect(im, 16 / 9, anchor_y=anchor)


@dataclass(frozen=True)
class Backgrounds:
    """Real background recordings for one scenario: their audio and what to record about them."""

    audio: tuple[np.ndarray, ...]
    ids: tuple[str, ...]
    sha256: str
    source: str

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "recordings": len(self.ids), "ids": list(self.ids), "sha256": self.sha256,
                "seconds": round(sum(len(a) for a in self.audio) / RATE, 1)}


NO_BACKGROUNDS = Backgrounds((), (), hashlib.sha256().hexdigest(), "none")


def load_backgrounds(corpus: str | Path | None, events: Sequence[str], split: str = "train") -> Backgrounds:
    """The corpus recordings of ``split`` a scenario with ``events`` may use as background.

    ``corpus`` None means none (augmentation without real backgrounds). A corpus directory
    that is missing or unprepared is one ConfigError that says how to build it.
    """
    if corpus is None:
        return NO_BACKGROUNDS
    from export.corpus import backgrounds_for, load_prepared

    path = Path(corpus)
    if not (path / "provenance.json").is_file():
        raise ConfigError(f"no prepared corpus of real recordings at {path} (augmentation mixes in its background "
                          f"recordings); build it with 'make corpus' (or: python -m export.corpus prepare --cache "
                          f"{path}), or train without them: --no-real-backgrounds")
    _check_fresh(path)
    recs = backgrounds_for(load_prepared(path, split=split), events)
    if not recs:
        raise ConfigError(f"the corpus at {path} has no '{split}' recording usable as background for events "
                          f"{list(events)}; prepare the full corpus ('make corpus')")
    h = hashlib.sha256()
    for r in recs:
        h.update(r.id.encode())
        h.update(np.ascontiguousarray(r.audio, np.float32).tobytes())
    return Backgrounds(tuple(r.audio for r in recs), tuple(r.id for r in recs), h.hexdigest(), f"{path} ({split})")


def load_event_recordings(corpus: str | Path | None, events: Sequence[str], split: str = "train",
                          min_source_rate: int = RATE) -> dict[str, tuple[np.ndarray, ...]]:
    """The wide-band corpus recordings of ``split`` that are one of ``events`` (real speech for ``speech``), by event.

    Empty without a corpus or when none of its recordings is of the scenario's event classes.
    Recordings of a source below ``min_source_rate`` are left out: the corpus' telephone prompts
    (8 kHz) inserted as ``speech`` taught smart_home that band-limited harmonic sound is speech,
    and held-out music fired it (see :class:`edgefusion.augment.AugmentPolicy`). Band-limiting
    itself stays in the augmentation, applied to whole windows, events and backgrounds alike.
    """
    if corpus is None or not (Path(corpus) / "provenance.json").is_file():
        return {}
    from export.corpus import load_prepared

    out: dict[str, list[np.ndarray]] = {}
    for r in load_prepared(Path(corpus), split=split):
        if r.role in events and r.source_rate >= min_source_rate:
            out.setdefault(r.role, []).append(r.audio)
    return {e: tuple(v) for e, v in sorted(out.items())}


def _check_fresh(path: Path) -> None:
    """Refuse a corpus prepared from an older version of the shipped list (training would silently
    miss the recordings added since, and a file moved between splits could leak into training)."""
    import json

    from export.corpus import DEFAULT_LIST, ROOT
    from export.corpus_sources import sha256_bytes

    prov = json.loads((path / "provenance.json").read_text())
    shipped = str(DEFAULT_LIST.relative_to(ROOT))
    if prov.get("list") == shipped and prov.get("list_sha256") != sha256_bytes(DEFAULT_LIST.read_bytes()):
        raise ConfigError(f"the corpus at {path} was prepared from an older {shipped}; prepare it again: "
                          f"make corpus (or: python -m export.corpus prepare --cache {path})")


def augmented_samples(scenario: Scenario, n: int, seed: int, augment: RandomAugment | None,
                      hard: bool = False) -> Iterator[tuple[LabeledSample, FusionWindow]]:
    """Each sample of ``generate_samples(scenario, n, seed)`` and its (augmented) fusion window."""
    audio_events = set(scenario.audio_events)
    for i, s in enumerate(generate_samples(scenario, n, seed, hard)):
        image, audio = s.image, s.audio
        if augment is not None and augment.events:
            # its own random stream: the perturbations below draw as they did before real events existed
            audio, added = augment.insert_event(audio, s.events, np.random.default_rng([seed, AUGMENT_STREAM, 2, i]))
            if added is not None:
                events = s.events | {added}
                s = replace(s, audio=audio, events=events, action=scenario.decide(events, s.intent))
        if augment is not None:
            image, audio, _ = augment(image, audio, np.random.default_rng([seed, AUGMENT_STREAM, i]),
                                      audio_event=bool(s.events & audio_events))
        yield s, FusionWindow(t_ns=0, image=image, audio=audio, command=s.command)


def build_augmented(scenario: Scenario, builder: FeedBuilder, n: int, seed: int, augment: RandomAugment | None,
                    progress: Any = None) -> Dataset:
    """Like :func:`edgefusion.dataset.build_dataset`, each sample augmented first (labels unchanged).

    With ``augment`` None the result equals ``build_dataset(scenario, builder, n, seed)``.
    """
    events = scenario.events
    y_ev = np.zeros((n, len(events)), np.float32)
    y_act = np.zeros(n, np.int64)
    y_int = np.zeros(n, np.int64)
    labels = intent_labels(scenario.intents)

    def windows() -> Iterator[FusionWindow]:
        for i, (s, w) in enumerate(augmented_samples(scenario, n, seed, augment)):
            y_ev[i] = [e in s.events for e in events]
            y_act[i] = scenario.actions.index(s.action)
            y_int[i] = labels.index(s.intent or NO_INTENT)
            yield w

    return Dataset(stack_feeds(windows(), builder, progress), y_ev, y_act, y_int)


# -- the robust held-out set ----------------------------------------------------------------------


@dataclass(frozen=True)
class RobustRow:
    """One fixed perturbation of the robust held-out set."""

    name: str
    image: Callable[[np.ndarray], np.ndarray] | None = None
    audio: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None


def robust_rows(scenario: str, backgrounds: Backgrounds) -> list[RobustRow]:
    """The robustness bench's perturbations at its strengths, with the scenario's label-safe crop.

    ``backgrounds`` should be the corpus' held-out recordings (never trained on); without
    any, the two real-noise rows are left out.

    Example:
        >>> [r.name for r in robust_rows("driving", NO_BACKGROUNDS)][3:5]
        ['auto-exposure', '16:9 crop (top-aligned)']
    """
    crop_name, crop = bench_crop(scenario)

    def noise(snr_db: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        def f(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            bg = backgrounds.audio[int(rng.integers(len(backgrounds.audio)))]
            return aug.clip(aug.mix_at_snr(a, bg, snr_db, rng))
        return f

    rows = [
        RobustRow("brightness +40", image=lambda im: aug.brightness(im, 40)),
        RobustRow("brightness -40", image=lambda im: aug.brightness(im, -40)),
        RobustRow("contrast x0.6", image=lambda im: aug.contrast(im, 0.6)),
        RobustRow("auto-exposure", image=aug.auto_exposure),
        RobustRow(crop_name, image=crop),
        RobustRow("JPEG q20", image=lambda im: aug.jpeg(im, 20)),
        RobustRow("8 kHz source", audio=lambda a, rng: aug.band_limit(a, RATE, 8000)),
        RobustRow("gain -20 dB", audio=lambda a, rng: aug.gain_db(a, -20.0)),
    ]
    if backgrounds.audio:
        rows += [RobustRow("real noise SNR 10 dB", audio=noise(10.0)),
                 RobustRow("real noise SNR 0 dB", audio=noise(0.0))]
    return rows


def robust_windows(scenario: Scenario, n: int, seed: int, rows: Sequence[RobustRow]) -> tuple[
        list[FusionWindow], np.ndarray]:
    """The held-out samples of ``seed``, sample ``i`` through ``rows[i % len(rows)]``; and each sample's row index."""
    if not rows:
        raise ConfigError("the robust held-out set needs at least one perturbation")
    wins, which = [], np.arange(n) % len(rows)
    for i, s in enumerate(generate_samples(scenario, n, seed)):
        row = rows[which[i]]
        image = row.image(s.image) if row.image else s.image
        audio = row.audio(s.audio, np.random.default_rng([seed, AUGMENT_STREAM, 1, i])) if row.audio else s.audio
        wins.append(FusionWindow(t_ns=0, image=image, audio=audio, command=s.command))
    return wins, which
