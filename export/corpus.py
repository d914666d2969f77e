"""A corpus of real recordings, rebuilt from a declarative list (``export/corpus.toml``).

``prepare`` fetches what the list names (Debian sound packages, espeak-ng speech, small
files committed under ``tests/data``), decodes each file to 16 kHz mono float32 WAV in
``CACHE/wav/<id>.wav``, trims leading and trailing silence, copies each package's copyright
file, and writes ``CACHE/provenance.json``: for every file its package, version, path in the
package, licence, role, split, duration and sha256. The training augmentation and
``bench/robustness.py`` read the prepared corpus back with :func:`load_prepared`; neither
ever sees a ``heldout`` file in training.

Splits: ``train`` (training's backgrounds and event recordings), ``val`` (set aside for
choosing thresholds and options: never trained on, never reported as a result, e.g.
``bench/vad_share.py``) and ``heldout`` (the benches' results).

Roles: ``background`` is never labelled as an event; any other role names the reference
event class the recording truly is (``speech``, ``horn``): a scenario with that event class
labels it, every other scenario may use it as background (:func:`backgrounds_for`).

    python -m export.corpus prepare --cache runs/corpus [--only local,espeak]
    python -m export.corpus list

Example:
    >>> c = load_corpus()
    >>> sorted({f.split for f in c.files})
    ['heldout', 'train', 'val']
    >>> [f.id for f in backgrounds_for(c.files, ("siren", "horn")) if f.role != "background"][:1]
    ['speech_commands_yes']
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.errors import ConfigError, EdgeFusionError, ExportError, MissingDependencyError
from edgefusion.preprocess.audio import resample
from export import corpus_sources as src

__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_LIST",
    "KINDS",
    "RATE",
    "Corpus",
    "CorpusFile",
    "Recording",
    "backgrounds_for",
    "load_corpus",
    "load_prepared",
    "main",
    "prepare",
]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIST = Path(__file__).with_name("corpus.toml")
DEFAULT_CACHE = ROOT / "runs" / "corpus"
RATE = 16000
KINDS = ("deb", "typing", "espeak", "local")
SPLITS = ("train", "val", "heldout")
_REQUIRED = {"deb": ("package", "path"), "typing": ("package", "keys", "keys_select", "seconds", "seed"),
             "espeak": ("text", "voice", "speed", "pitch"), "local": ("path",)}
_COMMON = ("id", "kind", "sound", "role", "split", "licence")
_OPTIONAL = {"deb": ("member", "start", "seconds"), "local": ("start", "seconds"), "typing": (), "espeak": ()}
SILENCE_DB = -50.0  # trimmed from both ends: 20 ms frames this far below the file's loudest frame


@dataclass(frozen=True)
class CorpusFile:
    """One entry of the list (see the comment at the top of ``export/corpus.toml``)."""

    id: str
    kind: str
    sound: str
    role: str
    split: str
    licence: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def package(self) -> str | None:
        return self.params.get("package")


@dataclass(frozen=True)
class Corpus:
    """The parsed list: packages (name -> copyright path inside it) and files."""

    packages: dict[str, str]
    files: list[CorpusFile]
    source: Path


@dataclass(frozen=True)
class Recording:
    """A prepared file: 16 kHz mono float32 audio and its entry in ``provenance.json``."""

    id: str
    audio: np.ndarray
    role: str
    split: str
    sound: str
    #: the rate the source was recorded at (8000 for a telephone prompt: its band ends at 4 kHz)
    source_rate: int = RATE

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the corpus list ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def load_corpus(path: Path = DEFAULT_LIST) -> Corpus:
    """Parse and validate a corpus list; every problem is a ConfigError naming the entry."""
    doc = _load_toml(path)
    packages = {str(p["name"]): str(p.get("copyright", "")) for p in doc.get("package", [])}
    files, seen = [], set()
    for i, raw in enumerate(doc.get("file", [])):
        where = f"{path.name}: file #{i + 1} ({raw.get('id', 'no id')})"
        missing = [k for k in _COMMON if k not in raw]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        kind = raw["kind"]
        if kind not in KINDS:
            raise ConfigError(f"{where}: kind {kind!r}; expected one of {KINDS}")
        missing = [k for k in _REQUIRED[kind] if k not in raw]
        if missing:
            raise ConfigError(f"{where}: a '{kind}' entry needs {', '.join(missing)}")
        unknown = sorted(set(raw) - set(_COMMON) - set(_REQUIRED[kind]) - set(_OPTIONAL[kind]))
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown} for kind '{kind}'")
        if raw["split"] not in SPLITS:
            raise ConfigError(f"{where}: split {raw['split']!r}; expected one of {SPLITS}")
        if kind in ("deb", "local") and not _excerpt_ok(raw):
            raise ConfigError(f"{where}: start must be >= 0 and seconds > 0 (an excerpt of the file, in seconds)")
        if raw["id"] in seen:
            raise ConfigError(f"{where}: id {raw['id']!r} appears twice")
        if "package" in raw and raw["package"] not in packages:
            raise ConfigError(f"{where}: package {raw['package']!r} is not declared in a [[package]] table")
        seen.add(raw["id"])
        params = {k: v for k, v in raw.items() if k not in _COMMON}
        files.append(CorpusFile(str(raw["id"]), kind, str(raw["sound"]), str(raw["role"]), str(raw["split"]),
                                str(raw["licence"]), params))
    if not files:
        raise ConfigError(f"{path}: the list names no [[file]]")
    return Corpus(packages, files, path)


def _excerpt_ok(raw: dict[str, Any]) -> bool:
    start, seconds = raw.get("start", 0.0), raw.get("seconds", 1.0)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, seconds)) and \
        start >= 0 and seconds > 0


def excerpt(x: np.ndarray, rate: int, params: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """``x`` cut to the entry's ``start`` / ``seconds`` (long music tracks), and what provenance records of it.

    Example:
        >>> y, info = excerpt(np.arange(10, dtype=np.float32), 2, {"start": 1.0, "seconds": 2.0})
        >>> y.tolist(), info
        ([2.0, 3.0, 4.0, 5.0], {'excerpt_s': [1.0, 2.0]})
    """
    if "start" not in params and "seconds" not in params:
        return x, {}
    start = float(params.get("start", 0.0))
    a = round(start * rate)
    b = len(x) if "seconds" not in params else a + round(float(params["seconds"]) * rate)
    if a >= len(x):
        raise ExportError(f"start {start} s is past the end of the file ({len(x) / rate:.1f} s)")
    return x[a:b], {"excerpt_s": [start, float(params["seconds"]) if "seconds" in params else None]}


def backgrounds_for(files: Iterable[Any], events: Sequence[str]) -> list[Any]:
    """The entries (or recordings) a scenario with ``events`` may use as unlabelled background."""
    return [f for f in files if f.role == "background" or f.role not in events]


def trim_silence(x: np.ndarray, rate: int = RATE, floor_db: float = SILENCE_DB) -> np.ndarray:
    """``x`` without the leading and trailing 20 ms frames more than ``floor_db`` below its loudest.

    Example:
        >>> x = np.concatenate([np.zeros(960), np.ones(320), np.zeros(960)]).astype(np.float32)
        >>> len(trim_silence(x))
        320
    """
    frame = rate // 50
    n = len(x) // frame
    if n == 0:
        return x
    env = np.abs(x[: n * frame]).reshape(n, frame).max(axis=1)
    if env.max() <= 0:
        return x[:0]
    on = np.flatnonzero(env >= env.max() * 10 ** (floor_db / 20))
    return x[on[0] * frame : (on[-1] + 1) * frame]


def _render(f: CorpusFile, cache: Path, corpus: Corpus, state: dict[str, Any]) -> tuple[np.ndarray, int, dict]:
    """The entry's audio at its own rate, and what provenance should say about where it came from."""
    p = f.params
    if f.kind == "local":
        path = ROOT / str(p["path"])
        x, rate = src.decode_file(path)
        x, cut = _cut(f, x, rate)
        return x, rate, {"path": str(p["path"]), "file_sha256": src.sha256_bytes(path.read_bytes()), **cut}
    if f.kind == "espeak":
        if "espeak" not in state:
            state["espeak"] = src.espeak_version()
        x, rate = src.render_espeak(str(p["text"]), str(p["voice"]), int(p["speed"]), int(p["pitch"]),
                                    cache / "espeak" / f"{f.id}.wav")
        return x, rate, {"tool": state["espeak"], "text": p["text"], "voice": p["voice"], "speed": p["speed"],
                         "pitch": p["pitch"]}
    pkg = str(p["package"])
    root = _package(pkg, cache, corpus, state)
    info: dict[str, Any] = {"package": pkg, "version": state["packages"][pkg]["version"]}
    if f.kind == "typing":
        keys = src.select_keys(list(root.glob(str(p["keys"]))), str(p["keys_select"]))
        if not keys:
            raise ExportError(f"{f.id}: no file of package '{pkg}' matches {p['keys']!r}")
        downs = [src.decode_file(k) for k in keys]
        ups = [src.decode_file(r) if r.is_file() else None
               for r in (k.with_name(k.name.replace("-0.", "-1.")) for k in keys)]
        rate = downs[0][1]
        x = src.compose_typing([d[0] for d in downs], rate, float(p["seconds"]), int(p["seed"]),
                               [u[0] if u else None for u in ups])
        return x, rate, {**info, "keys": [str(k.relative_to(root)) for k in keys], "seed": p["seed"]}
    path = root / str(p["path"])
    if not path.is_file():
        raise ExportError(f"{f.id}: package '{pkg}' has no file {p['path']} (has its layout changed?)")
    info["path"] = str(p["path"])
    if "member" in p:
        data, title = src.read_cat_member(path, int(p["member"]))
        x, rate = src.decode_bytes(data, f"{f.id} ({p['path']} member {p['member']})")
        x, cut = _cut(f, x, rate)
        return x, rate, {**info, "member": p["member"], "title": title, "file_sha256": src.sha256_bytes(data), **cut}
    x, rate = src.decode_file(path)
    x, cut = _cut(f, x, rate)
    return x, rate, {**info, "file_sha256": src.sha256_bytes(path.read_bytes()), **cut}


def _cut(f: CorpusFile, x: np.ndarray, rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        return excerpt(x, rate, f.params)
    except ExportError as exc:
        raise ExportError(f"{f.id}: {exc}") from exc


def _package(name: str, cache: Path, corpus: Corpus, state: dict[str, Any]) -> Path:
    """Fetch and unpack a package once per run; copy its copyright file beside the WAVs."""
    if name in state["packages"]:
        return Path(state["packages"][name]["root"])
    root = src.fetch_deb(name, cache / "debs", cache / "extract")
    deb = (root / ".unpacked").read_text().strip()
    rec: dict[str, Any] = {"root": str(root), "deb": deb, "version": src.deb_version(deb),
                           "deb_sha256": src.sha256_bytes((cache / "debs" / deb).read_bytes())}
    copyright_path = corpus.packages.get(name, "")
    if copyright_path:
        c = root / copyright_path
        if not c.is_file():
            raise ExportError(f"package '{name}' has no copyright file {copyright_path}")
        dest = cache / "licences" / f"{name}.txt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(c, dest)
        rec["copyright"] = str(dest.relative_to(cache))
    state["packages"][name] = rec
    return root


def prepare(cache: Path, corpus: Corpus | None = None, only: Sequence[str] = (), progress: bool = True) -> dict:
    """Build every file of ``corpus`` (of the kinds in ``only``, if given) into ``cache``; returns the provenance."""
    try:
        import soundfile as sf
    except ImportError as exc:
        raise MissingDependencyError("soundfile", "audio", "preparing the corpus") from exc
    corpus = corpus or load_corpus()
    bad = sorted(set(only) - set(KINDS))
    if bad:
        raise ConfigError(f"--only {','.join(bad)}: expected kinds among {', '.join(KINDS)}")
    files = [f for f in corpus.files if not only or f.kind in only]
    (cache / "wav").mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"packages": {}}
    entries = []
    for f in _bar(files, progress):
        x, rate, origin = _render(f, cache, corpus, state)
        y = trim_silence(resample(x, rate, RATE) if rate != RATE else x)
        if len(y) == 0:
            raise ExportError(f"{f.id}: the decoded audio is silent")
        wav = cache / "wav" / f"{f.id}.wav"
        sf.write(str(wav), y, RATE, subtype="FLOAT")
        rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
        entries.append({**{k: v for k, v in asdict(f).items() if k != "params"}, "source": origin,
                        "source_rate": rate, "seconds": round(len(y) / RATE, 3), "wav": str(wav.relative_to(cache)),
                        "sha256": src.sha256_bytes(wav.read_bytes()),
                        # the samples' own hash: the file's also covers the PEAK chunk's time of writing
                        "audio_sha256": src.sha256_bytes(np.ascontiguousarray(y, np.float32).tobytes()),
                        "rms_dbfs": round(20 * np.log10(rms + 1e-12), 2),
                        "peak": round(float(np.abs(y).max()), 4)})
    _check_splits(entries)
    prov = {"format_version": 1, "sample_rate": RATE, "list": str(corpus.source.relative_to(ROOT))
            if corpus.source.is_relative_to(ROOT) else str(corpus.source),
            "list_sha256": src.sha256_bytes(corpus.source.read_bytes()), "only": list(only),
            "packages": {k: {kk: vv for kk, vv in v.items() if kk != "root"} for k, v in state["packages"].items()},
            "files": entries,
            "seconds": {s: round(sum(e["seconds"] for e in entries if e["split"] == s), 1) for s in SPLITS}}
    (cache / "provenance.json").write_text(json.dumps(prov, indent=2, ensure_ascii=False) + "\n")
    return prov


def _check_splits(entries: Sequence[dict[str, Any]]) -> None:
    """Refuse the same audio in both splits: a held-out file must never be trained on."""
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        for h in {e["audio_sha256"], e["source"].get("file_sha256")} - {None}:
            by_hash.setdefault(h, []).append(e)
    for group in by_hash.values():
        if len({e["split"] for e in group}) > 1:
            ids = ", ".join(f"{e['id']} ({e['split']})" for e in group)
            raise ExportError(f"the same audio is listed in both splits: {ids}; keep it in one split only")


def _bar(items: Sequence[CorpusFile], on: bool) -> Iterable[CorpusFile]:
    try:
        from tqdm import tqdm
    except ImportError:  # the progress bar is a nicety of the train extra: plain lines without it
        for i, f in enumerate(items):
            if on:
                print(f"[{i + 1}/{len(items)}] {f.id}", file=sys.stderr)
            yield f
        return
    with tqdm(items, desc="corpus", unit="file", disable=not on) as bar:
        for f in bar:
            bar.set_postfix_str(f.id, refresh=False)
            yield f


def load_prepared(cache: Path = DEFAULT_CACHE, split: str | None = None,
                  roles: Sequence[str] | None = None) -> list[Recording]:
    """The prepared recordings of ``split`` (all if None) whose role is in ``roles`` (all if None)."""
    prov_path = cache / "provenance.json"
    if not prov_path.is_file():
        raise ConfigError(f"{cache} holds no prepared corpus (no provenance.json); "
                          f"build it with: python -m export.corpus prepare --cache {cache}")
    try:
        import soundfile as sf
    except ImportError as exc:
        raise MissingDependencyError("soundfile", "audio", "reading the corpus") from exc
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split {split!r}: expected one of {SPLITS}")
    out = []
    for e in json.loads(prov_path.read_text())["files"]:
        if (split is None or e["split"] == split) and (roles is None or e["role"] in roles):
            x, rate = sf.read(str(cache / e["wav"]), dtype="float32")
            if rate != RATE:
                raise ConfigError(f"{cache / e['wav']}: {rate} Hz, expected {RATE} (prepare the corpus again)")
            out.append(Recording(e["id"], x, e["role"], e["split"], e["sound"], int(e.get("source_rate", RATE))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.corpus", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fetch, render and decode every file of the list")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="output directory (default runs/corpus)")
    p.add_argument("--list", type=Path, default=DEFAULT_LIST, help="the corpus list (default export/corpus.toml)")
    p.add_argument("--only", default="", help=f"comma-separated kinds to build ({','.join(KINDS)})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ls = sub.add_parser("list", help="print the list's entries")
    ls.add_argument("--list", type=Path, default=DEFAULT_LIST)
    args = ap.parse_args(argv)
    try:
        corpus = load_corpus(args.list)
        if args.cmd == "list":
            for f in corpus.files:
                print(f"{f.split:8} {f.role:11} {f.kind:7} {f.id:32} {f.sound}")
            return 0
        only = [k for k in args.only.split(",") if k]
        prov = prepare(args.cache, corpus, only, progress=not args.quiet)
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(prov['files'])} files, {prov['seconds']['train']} s train, {prov['seconds'].get('val', 0.0)} s val, "
          f"{prov['seconds']['heldout']} s held out "
          f"-> {args.cache / 'provenance.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
