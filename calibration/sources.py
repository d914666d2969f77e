"""Calibration data: iterables of model feeds, built by the one preprocessing implementation.

A :class:`CalibrationSource` yields feed dicts (input name -> array with a leading batch
axis) exactly as the runtime would hand them to a backend, and describes itself (kind,
sample count, seed, sha256 of the data) so the INT8 artifact can record what it was
calibrated on. Three producers:

- :class:`ScenarioSource` - synthesized by a reference scenario from a seed that never
  coincides with the training, held-out or parity seeds;
- :class:`WindowSource` - any iterable of :class:`~edgefusion.samples.FusionWindow`
  (recorded logs plug in here), through the package's :class:`FeedBuilder`;
- :class:`FeedSource` - feeds already stacked in arrays, e.g. an ``.npz`` file.

Example:
    >>> from edgefusion.package import load_package
    >>> pkg = load_package("smart_home")
    >>> src = ScenarioSource(pkg, samples=4, seed=200_003, batch=2)
    >>> [f["image"].shape[0] for f in src]
    [2, 2]
    >>> src.describe().samples
    4
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgefusion.dataset import stack_feeds
from edgefusion.errors import ConfigError, PackageError
from edgefusion.package import ModelPackage
from edgefusion.preprocess import FeedBuilder
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import EVAL_SEED_OFFSET, generate_samples, get_scenario

__all__ = [
    "CALIBRATION_SEED_OFFSET",
    "EVAL_SEED_OFFSET",
    "CalibrationInfo",
    "CalibrationSource",
    "FeedSource",
    "ScenarioSource",
    "WindowSource",
    "default_calibration_seed",
    "feeds_sha256",
    "train_seed",
]

# Calibration data is drawn from its own seed: seed + 200_003 is neither the training seed,
# the held-out seed (+100_003) nor the parity seed (+100_010).
CALIBRATION_SEED_OFFSET = 200_003


def train_seed(package: ModelPackage) -> int:
    """The seed the package's model was trained with (from its provenance)."""
    prov = package.manifest.provenance
    seed = prov.get("seed", prov.get("train_config", {}).get("seed"))
    if not isinstance(seed, int):
        raise PackageError(f"package '{package.name}': provenance.seed is {seed!r}, expected the integer training "
                           "seed; held-out and calibration seeds derive from it. Re-export the package, or give "
                           "calibration data explicitly (--calibration-feeds)")
    return seed


def default_calibration_seed(package: ModelPackage) -> int:
    return train_seed(package) + CALIBRATION_SEED_OFFSET


def feeds_sha256(batches: Iterable[Mapping[str, np.ndarray]]) -> str:
    """sha256 over every batch: for each input (sorted by name) its name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for feeds in batches:
        for name in sorted(feeds):
            a = np.ascontiguousarray(feeds[name])
            h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CalibrationInfo:
    """What a calibration source holds; stored in the INT8 artifact's provenance."""

    kind: str
    samples: int
    batches: int
    seed: int | None
    sha256: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "samples": self.samples, "batches": self.batches, "seed": self.seed,
                "sha256": self.sha256, **self.detail}


@runtime_checkable
class CalibrationSource(Protocol):
    """Anything that yields feed dicts and can say what it holds.

    Iterating must give the same data every time (quantization iterates once per
    artifact, the hash once more).
    """

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]: ...

    def describe(self) -> CalibrationInfo: ...


class FeedSource:
    """Feeds already stacked along axis 0 (one array per input), yielded in batches.

    Args:
        feeds: input name -> array whose first axis is the sample axis.
        batch: samples per yielded feed dict.
        kind: recorded as the data kind (e.g. ``"npz:zeros.npz"``).
        seed: the seed the data came from, when there is one.

    Example:
        >>> src = FeedSource({"x": np.zeros((3, 2), np.float32)}, batch=2)
        >>> [f["x"].shape for f in src]
        [(2, 2), (1, 2)]
    """

    def __init__(self, feeds: Mapping[str, np.ndarray], batch: int = 16, kind: str = "feeds",
                 seed: int | None = None, detail: dict[str, Any] | None = None) -> None:
        if batch < 1:
            raise ConfigError(f"calibration batch must be at least 1, got {batch}")
        if not feeds:
            raise ConfigError("calibration feeds are empty; expected one array per model input")
        counts = {k: int(np.shape(v)[0]) if np.ndim(v) else -1 for k, v in feeds.items()}
        if len(set(counts.values())) != 1 or min(counts.values()) < 1:
            raise ConfigError(f"calibration feeds must all hold the same number (≥ 1) of samples along axis 0; "
                              f"found {counts}")
        self.feeds = {k: np.asarray(v) for k, v in feeds.items()}
        self.samples = next(iter(counts.values()))
        self.batch = batch
        self.kind, self.seed, self.detail = kind, seed, dict(detail or {})
        self._sha: str | None = None

    @classmethod
    def from_npz(cls, path: str | Path, package: ModelPackage, batch: int = 16) -> FeedSource:
        """Feeds from an ``.npz`` holding one array per model input (and nothing else)."""
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                feeds = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read calibration feeds {p}: {exc}; expected an .npz written by "
                              "numpy.savez with one array per model input") from exc
        src = cls(feeds, batch=batch, kind="npz", detail={"file": p.name})
        src.check(package)
        return src

    def check(self, package: ModelPackage) -> None:
        """Refuse feeds whose names, dtypes or fixed dimensions differ from the package's inputs."""
        want = {i.name: i for i in package.inputs}
        if set(want) != set(self.feeds):
            raise ConfigError(f"calibration feeds have inputs {sorted(self.feeds)}; package '{package.name}' "
                              f"expects exactly {sorted(want)}")
        for name, spec in want.items():
            a = self.feeds[name]
            fixed_ok = a.ndim == len(spec.shape) and all(
                isinstance(d, str) or d == n for d, n in zip(spec.shape, a.shape))
            if a.dtype != np.dtype(spec.dtype) or not fixed_ok:
                raise ConfigError(f"calibration input '{name}': expected {spec.dtype} {list(spec.shape)}, "
                                  f"found {a.dtype} {list(a.shape)}")

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, self.samples, self.batch):
            yield {k: v[i : i + self.batch] for k, v in self.feeds.items()}

    def describe(self) -> CalibrationInfo:
        if self._sha is None:
            self._sha = feeds_sha256(self)
        n_batches = -(-self.samples // self.batch)
        return CalibrationInfo(self.kind, self.samples, n_batches, self.seed, self._sha,
                               {"batch": self.batch, **self.detail})


class WindowSource(FeedSource):
    """Fusion windows (recorded or synthesized) turned into feeds by a :class:`FeedBuilder`.

    The windows are consumed once, on construction, so the source can be iterated again
    and hashed. ``limit`` stops after that many windows.

    Example:
        >>> from edgefusion.package import load_package
        >>> pkg = load_package("smart_home")
        >>> wins = [FusionWindow(t_ns=0, image=None, audio=None, command="lock the door")] * 3
        >>> WindowSource(wins, pkg.feed_builder(), batch=2).describe().samples
        3
    """

    def __init__(self, windows: Iterable[FusionWindow], builder: FeedBuilder, batch: int = 16,
                 limit: int | None = None, kind: str = "windows", seed: int | None = None,
                 detail: dict[str, Any] | None = None, progress: Any = None) -> None:
        def checked() -> Iterator[FusionWindow]:
            for w in itertools.islice(windows, None if limit is None else max(limit, 0)):
                if not isinstance(w, FusionWindow):
                    raise ConfigError(f"calibration windows must be FusionWindow objects, found {type(w).__name__}")
                yield w

        feeds = stack_feeds(checked(), builder, progress)
        if not feeds:
            raise ConfigError("the calibration windows were empty; expected at least one FusionWindow")
        super().__init__(feeds, batch, kind, seed, detail)


class ScenarioSource(WindowSource):
    """``samples`` windows synthesized by the package's scenario from ``seed``.

    The seed must differ from the package's training seed and held-out seed, so the
    INT8 model is never calibrated on the data it is judged on. A fraction
    ``missing_rate`` of windows has its image, and independently its audio, marked
    missing (zeros and presence 0, exactly as the runtime feeds a masked modality), so the
    activation ranges also cover the masked paths the runtime takes.
    """

    def __init__(self, package: ModelPackage, samples: int = 512, seed: int | None = None, batch: int = 16,
                 missing_rate: float = 0.1, progress: Any = None) -> None:
        scen_name = package.manifest.scenario
        if not scen_name:
            raise ConfigError(f"package '{package.name}' names no scenario, so calibration data cannot be "
                              "synthesized; give recorded feeds instead (--calibration-feeds FILE.npz)")
        if samples < 1:
            raise ConfigError(f"calibration samples must be at least 1, got {samples}")
        base = train_seed(package)
        seed = base + CALIBRATION_SEED_OFFSET if seed is None else seed
        taken = {base: "training", base + EVAL_SEED_OFFSET: "held-out evaluation"}
        if seed in taken:
            raise ConfigError(f"calibration seed {seed} is the package's {taken[seed]} seed; choose another "
                              f"(default: training seed + {CALIBRATION_SEED_OFFSET})")
        if not 0.0 <= missing_rate <= 1.0:
            raise ConfigError(f"missing_rate is a probability in [0, 1], got {missing_rate}")
        scen = get_scenario(str(scen_name))
        rng = np.random.default_rng([seed, 3])  # its own stream: the samples do not depend on it

        def windows() -> Iterator[FusionWindow]:
            for s in generate_samples(scen, samples, seed):
                missing = tuple(m for m in ("image", "audio") if rng.random() < missing_rate)
                yield FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command, missing=missing)

        super().__init__(windows(), package.feed_builder(), batch, kind="scenario", seed=seed,
                         detail={"scenario": scen.name, "missing_rate": missing_rate}, progress=progress)
