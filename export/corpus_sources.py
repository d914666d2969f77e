"""How each kind of corpus entry becomes audio: Debian packages, sound banks, typing, espeak-ng.

Every function returns ``(samples, rate)`` with float32 samples in [-1, 1], mono, at the
source's own rate (:mod:`export.corpus` resamples to the model rate once, with the
project's resampler). External tools are called by name and a missing one fails with
one line that says how to install it.

Example:
    >>> x = compose_typing([np.ones(4, np.float32)], 100, seconds=1.0, seed=0)
    >>> len(x), bool(x.max() > 0)
    (100, True)
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefusion.errors import ExportError, MissingDependencyError

__all__ = [
    "compose_typing",
    "deb_version",
    "decode_bytes",
    "decode_file",
    "espeak_version",
    "fetch_deb",
    "read_cat_member",
    "render_espeak",
    "select_keys",
    "sha256_bytes",
]


def _tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ExportError(f"'{name}' is not installed; install it with: {install}")
    return path


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"{what}: '{cmd[0]}' did not finish in {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ExportError(f"{what}: '{' '.join(cmd)}' exited with status {done.returncode}: {last[0]}")
    return done.stdout


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_deb(package: str, debs: Path, extract: Path) -> Path:
    """Download ``package`` with ``apt-get download`` (once) and unpack it with ``dpkg -x``.

    Returns the directory it was unpacked into. Nothing is installed on the system.
    """
    apt = _tool("apt-get", "a Debian-based system (apt-get and dpkg are needed to fetch sound packages)")
    dpkg = _tool("dpkg", "a Debian-based system (dpkg unpacks the downloaded packages)")
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        try:
            _run([apt, "download", package], f"package '{package}'", cwd=debs)
        except ExportError as exc:
            raise ExportError(f"{exc} (is the name right, and has 'apt-get update' been run?)") from exc
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise ExportError(f"package '{package}': apt-get download left no {package}_*.deb in {debs}")
    out = extract / package
    marker = out / ".unpacked"
    if not marker.exists():
        out.mkdir(parents=True, exist_ok=True)
        _run([dpkg, "-x", str(found[-1]), str(out)], f"package '{package}'")
        marker.write_text(found[-1].name + "\n")
    return out


def deb_version(deb_name: str) -> str:
    """The version in a Debian file name ``name_version_arch.deb`` (``%3a`` is the epoch's colon).

    Example:
        >>> deb_version("tuxpaint-data_1%3a0.9.28-sdl2-1_all.deb")
        '1:0.9.28-sdl2-1'
    """
    parts = deb_name.rsplit(".deb", 1)[0].split("_")
    return parts[1].replace("%3a", ":") if len(parts) >= 3 else "unknown"


def decode_bytes(data: bytes, what: str) -> tuple[np.ndarray, int]:
    """WAV / FLAC / Ogg Vorbis / MP3 bytes -> mono float32 samples and their rate (libsndfile)."""
    try:
        import soundfile as sf
    except ImportError as exc:
        raise MissingDependencyError("soundfile", "audio", "decoding the corpus' sound files") from exc
    mp3 = _riff_mp3(data)
    f = io.BytesIO(data if mp3 is None else mp3)
    if mp3 is not None:
        f.name = "stream.mp3"  # a bare MPEG stream (no ID3 tag): libsndfile goes by the extension
    try:
        x, rate = sf.read(f, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ExportError(f"{what}: cannot decode it as audio ({exc})") from exc
    return np.ascontiguousarray(x.mean(axis=1), np.float32), int(rate)


def _riff_mp3(data: bytes) -> bytes | None:
    """The MP3 stream inside a RIFF WAVE whose format is MPEG layer 3 (tag 0x55), else None.

    libsndfile reads MP3 streams but not RIFF-wrapped ones (qgo's doorbell.wav is one); the
    stream is the ``data`` chunk as it is, so it is handed over unwrapped (a dozen lines; no
    library is needed for it).
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE" or data[12:16] != b"fmt " or data[20:22] != b"\x55\x00":
        return None
    at = 12
    while at + 8 <= len(data):
        tag, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if tag == b"data":
            return data[at + 8:at + 8 + size]
        at += 8 + size + (size & 1)
    return None


def decode_file(path: Path) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise ExportError(f"{path}: no such file (has the package's layout changed?)")
    return decode_bytes(path.read_bytes(), str(path))


def read_cat_member(path: Path, member: int) -> tuple[bytes, str]:
    """The RIFF WAV bytes and the title of entry ``member`` of an OpenTTD sound bank (.cat).

    The bank starts with a table of (offset, size) pairs of little-endian uint32 (the
    offsets' top bit flags the newer format); each entry is a length-prefixed title and a
    RIFF file, whose own header gives its size.
    """
    data = path.read_bytes()
    if len(data) < 8:
        raise ExportError(f"{path}: too short to be a sound bank")
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    if not 0 <= member < count:
        raise ExportError(f"{path}: member {member} is out of range; the bank has {count} entries (0..{count - 1})")
    offset = struct.unpack_from("<I", data, 8 * member)[0] & 0x7FFFFFFF
    name_len = data[offset]
    title = data[offset + 1 : offset + 1 + name_len].rstrip(b"\0").decode("latin-1")
    start = offset + 1 + name_len
    if data[start : start + 4] != b"RIFF":
        raise ExportError(f"{path}: member {member} ({title!r}) holds no RIFF WAV")
    size = struct.unpack_from("<I", data, start + 4)[0] + 8
    return data[start : start + size], title


def select_keys(paths: Sequence[Path], which: str) -> list[Path]:
    """Every other key file of a sorted list: ``even`` or ``odd`` positions, so two splits share none.

    Example:
        >>> [p.name for p in select_keys([Path("a"), Path("b"), Path("c")], "odd")]
        ['b']
    """
    ordered = sorted(paths)
    if which not in ("even", "odd"):
        raise ExportError(f"keys_select {which!r}: expected 'even' or 'odd'")
    return ordered[0 if which == "even" else 1 :: 2]


def compose_typing(keys: Sequence[np.ndarray], rate: int, seconds: float, seed: int,
                   releases: Sequence[np.ndarray | None] = ()) -> np.ndarray:
    """Keyboard typing of ``seconds``: recorded key sounds placed with a typist's rhythm.

    Keystrokes come every ~0.17 s (log-normal), with word gaps and longer pauses; each
    key's loudness varies by +-3 dB. ``releases`` (same order as ``keys``) are the key-up
    sounds, played 60-140 ms after the press when given.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n, np.float32)
    t = float(rng.uniform(0.05, 0.3))
    while t < seconds:
        i = int(rng.integers(len(keys)))
        gain = np.float32(10 ** (rng.uniform(-3.0, 3.0) / 20))
        _add(out, keys[i] * gain, int(t * rate))
        rel = releases[i] if i < len(releases) else None
        if rel is not None:
            _add(out, rel * gain, int((t + rng.uniform(0.06, 0.14)) * rate))
        t += float(rng.lognormal(np.log(0.17), 0.35))
        if rng.random() < 0.15:  # between words
            t += float(rng.uniform(0.15, 0.45))
        if rng.random() < 0.03:  # the typist stops to think
            t += float(rng.uniform(0.8, 2.0))
    return np.clip(out, -1.0, 1.0)


def _add(out: np.ndarray, x: np.ndarray, at: int) -> None:
    end = min(len(out), at + len(x))
    if end > at:
        out[at:end] += x[: end - at]


def espeak_version() -> str:
    exe = _tool("espeak-ng", "apt-get install espeak-ng (or: make corpus)")
    return _run([exe, "--version"], "espeak-ng").strip()


def render_espeak(text: str, voice: str, speed: int, pitch: int, out_wav: Path) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng into ``out_wav``, then decoded."""
    exe = _tool("espeak-ng", "apt-get install espeak-ng (or: make corpus)")
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    _run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out_wav), text],
         f"espeak-ng voice {voice!r}")
    return decode_file(out_wav)

