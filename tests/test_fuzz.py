"""Fuzzing the input boundaries: config TOML, MCAP bytes, manifests, text lines (issue 12).

Hypothesis generates at least :data:`CASES` inputs of each kind from a fixed seed
(``derandomize``: the same cases on every run, so a failure reproduces), bounded in time
(each case under :data:`CASE_S` seconds, or it counts as a hang) and memory (the peak
resident size may grow by at most :data:`GROWTH_MB` over a whole kind). An input may be
refused - with an :class:`~edgefusion.errors.EdgeFusionError`, one line where a person
reads it - or accepted; any other exception is a traceback a user would have seen, and
fails the test. The nasty cases found so far are kept in ``tests/data/fuzz/`` and replayed
by :func:`test_the_kept_corpus`.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TEST_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefusion.config import dump_toml, load, pipeline_config
from edgefusion.errors import EdgeFusionError
from edgefusion.labels import Span
from edgefusion.logs import LogReader, LogWriter, decode
from edgefusion.package import BUILTIN_DIR, load_package
from edgefusion.samples import MAX_COMMAND_CHARS, AudioChunk, Command, Frame
from edgefusion.sources import StdinTextSource
from edgefusion.sources.replay import ReplaySource
from edgefusion.sources.text import LineSplitter, sanitize

CASES = 1000
CASE_S = 5.0
GROWTH_MB = 512
CORPUS = TEST_DATA / "fuzz"
FUZZ = settings(max_examples=CASES, derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def bounded(what: str) -> Iterator[None]:
    """Fail a case that takes over CASE_S seconds (a hang) instead of waiting for it."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what}: no answer within {CASE_S} s (a hang)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, CASE_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Budget:
    """Counts the cases of one kind and bounds the growth of the process's peak memory over them."""

    def __init__(self) -> None:
        self.cases = self.refused = 0
        self.rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def check(self, kind: str) -> None:
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.rss0) / 1024
        assert self.cases >= CASES, f"{kind}: only {self.cases} cases generated"
        assert grown_mb < GROWTH_MB, f"{kind}: the peak memory grew by {grown_mb:.0f} MB"
        print(f"{kind}: {self.cases} cases ({self.refused} refused in one line), 0 tracebacks, 0 hangs, peak memory "
              f"+{grown_mb:.0f} MB")


def refused_or_fine(what: str, fn, *args, budget: Budget | None = None) -> None:  # type: ignore[no-untyped-def]
    """Call ``fn``: an EdgeFusionError is a refusal (one line); anything else escaping is a bug."""
    with bounded(what):
        try:
            fn(*args)
        except EdgeFusionError as exc:
            assert str(exc).strip(), f"{what}: an empty error message"
            if budget is not None:
                budget.refused += 1


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: flip a bit, zero a run, cut, insert, or duplicate a run."""
    b = bytearray(data)
    for kind, pos, val in edits:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] ^= 1 << (val % 8)
        elif kind == 1:
            b[i : i + 1 + val % 4096] = bytes(len(b[i : i + 1 + val % 4096]))
        elif kind == 2:
            del b[i:]
        elif kind == 3:
            b[i:i] = bytes([val % 256]) * (1 + val % 64)
        else:
            b[i:i] = b[i : i + 1 + val % 2048]
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 30), st.integers(0, 1 << 16)), max_size=6)

# -- config TOML ------------------------------------------------------------------------------

EXAMPLE_TOML = (REPO / "examples" / "smart_home.toml").read_text()
KEYS = ["model", "package", "threads", "backend", "sources", "camera", "uri", "loop", "text", "audio", "sync",
        "audio_policy", "queues", "frame_capacity", "deadline_ms", "http", "port", "host", "sinks", "mqtt", "tls",
        "ca_file", "logging", "level", "post", "on", "off"]
TOML_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str), st.sampled_from(["inf", "-inf", "nan", "1e308", "0x7fff", "true"]),
    st.floats(allow_nan=True).map(repr),
    st.text(max_size=40).map(json.dumps), st.sampled_from(["[]", "{}", "[1, 'a']", '"\\u0000"', "'''x'''"]),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: "{a=" * n + "1" + "}" * n))


@st.composite
def toml_documents(draw: st.DrawFn) -> bytes:
    how = draw(st.integers(0, 3))
    if how == 0:  # the example with one value replaced
        lines = EXAMPLE_TOML.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        if "=" in lines[i]:
            lines[i] = lines[i].split("=")[0] + "= " + draw(TOML_VALUES)
        return "\n".join(lines).encode("utf-8", "surrogatepass")
    if how == 1:  # tables and keys of ours with hostile values
        out = []
        for _ in range(draw(st.integers(0, 6))):
            out.append(f"[{'.'.join(draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)))}]")
            for _ in range(draw(st.integers(0, 4))):
                out.append(f"{draw(st.sampled_from(KEYS))} = {draw(TOML_VALUES)}")
        return "\n".join(out).encode("utf-8", "surrogatepass")
    if how == 2:
        return mutate(EXAMPLE_TOML.encode(), draw(EDITS))
    return draw(st.binary(max_size=512))


def _config_boundary(path: Path) -> None:
    cfg = load(path)
    pipeline_config(cfg)
    dump_toml(cfg)


def test_fuzz_config_toml(tmp_path):
    budget = Budget()
    path = tmp_path / "c.toml"

    @FUZZ
    @given(doc=toml_documents())
    def case(doc: bytes) -> None:
        budget.cases += 1
        path.write_bytes(doc)
        refused_or_fine("config", _config_boundary, path, budget=budget)

    case()
    budget.check("config TOML")


# -- MCAP bytes -------------------------------------------------------------------------------


def small_log(path: Path) -> Path:
    """Every topic we write, in many small chunks (so damage hits chunk boundaries, indexes and summary)."""
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    with LogWriter(path, chunk_size=512) as w:
        w.label(Span(0, 10**9, "coverage", "", "synth"))
        for i in range(12):
            t = i * 33_000_000
            w.audio(AudioChunk(t_ns=t, samples=np.full(32, 0.1, np.float32), sample_rate=16000), t)
            w.frame(Frame(t_ns=t, image=img), t)
            w.truth(t, "none", ["dark"], t)
            if i % 5 == 2:
                w.command(Command(t_ns=t, text="lock the door"), t)
        w.metadata("edgefusion", {"package_ref": "smart_home"})
        w.attachment("config.json", "application/json", b"{}")
    return path


def read_everything(path: Path) -> None:
    """What log info, replay, --check and labelling do with a log."""
    with LogReader(path) as r:
        r.info()
        for m in r.messages():
            with contextlib.suppress(EdgeFusionError):
                decode(m)
        with contextlib.suppress(EdgeFusionError):
            r.labels()
        r.sample_range()
    with contextlib.suppress(EdgeFusionError), ReplaySource(path, allow_gaps=True) as src:
        for _ in src:
            pass


@pytest.fixture(scope="module")
def base_logs(tmp_path_factory) -> list[bytes]:
    ours = small_log(tmp_path_factory.mktemp("fuzz") / "ours.mcap").read_bytes()
    return [ours] + [p.read_bytes() for p in sorted((TEST_DATA / "mcap" / "rosbag2").glob("*.mcap"))]


def record_starts(data: bytes) -> list[int]:
    """Offsets where the records of an intact MCAP file begin (the chunk boundaries among them)."""
    out, off = [], 8
    while off + 9 <= len(data):
        out.append(off)
        off += 9 + struct.unpack_from("<Q", data, off + 1)[0]
    return out


def test_fuzz_mcap_truncated_at_every_record_boundary(base_logs, tmp_path):
    path = tmp_path / "t.mcap"
    cuts = 0
    for data in base_logs:
        for off in record_starts(data):
            for cut in (off, off + 1, off + 9, off + 20):
                path.write_bytes(data[:cut])
                refused_or_fine(f"MCAP cut at {cut}", read_everything, path)
                cuts += 1
    assert cuts > 200


def test_fuzz_mcap_bytes(base_logs, tmp_path):
    budget = Budget()
    path = tmp_path / "m.mcap"

    @FUZZ
    @given(which=st.integers(0, len(base_logs) - 1), edits=EDITS, chunk=st.integers(0, 1 << 20),
           junk=st.binary(max_size=64))
    def case(which: int, edits: list[tuple[int, int, int]], chunk: int, junk: bytes) -> None:
        budget.cases += 1
        data = base_logs[which]
        if chunk % 5 == 0:  # a whole chunk zeroed, as a bad sector does
            starts = record_starts(data)
            i = starts[chunk % len(starts)]
            length = 9 + struct.unpack_from("<Q", data, i + 1)[0]
            data = data[:i] + bytes(length) + data[i + length :]
        elif chunk % 5 == 1:
            data = data[: 8 + chunk % 64] + junk  # a header and then garbage
        path.write_bytes(mutate(data, edits))
        refused_or_fine("MCAP", read_everything, path, budget=budget)

    case()
    budget.check("MCAP bytes")


# -- manifests ------------------------------------------------------------------------------------

MANIFEST = json.loads((BUILTIN_DIR / "smart_home" / "manifest.json").read_text())
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False),
              st.text(max_size=20), st.sampled_from(["../../../etc/passwd", "/etc/passwd", "", "model.fp32.onnx"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


MANIFEST_PATHS = [p for p in _paths(MANIFEST) if p][:4000]


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    how = draw(st.integers(0, 3))
    if how <= 1:  # a part of the real manifest replaced (or removed) by a hostile value
        m = json.loads(json.dumps(MANIFEST))
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(MANIFEST_PATHS))
            node = m
            with contextlib.suppress(KeyError, IndexError, TypeError):
                for k in path[:-1]:
                    node = node[k]
                if how == 1 and isinstance(node, dict):
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = draw(JSON_VALUES)
        return json.dumps(m).encode()
    if how == 2:
        return mutate(json.dumps(MANIFEST).encode(), draw(EDITS))
    return draw(st.one_of(st.binary(max_size=256), st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)))


def _package_boundary(path: Path) -> None:
    pkg = load_package(path, verify=False)  # the artifacts are the real ones: hashes are checked elsewhere
    pkg.describe()
    pkg.feed_builder()


def test_fuzz_manifests(pkg_copy):
    budget = Budget()

    @FUZZ
    @given(doc=manifests())
    def case(doc: bytes) -> None:
        budget.cases += 1
        (pkg_copy / "manifest.json").write_bytes(doc)
        refused_or_fine("manifest", _package_boundary, pkg_copy, budget=budget)

    case()
    budget.check("manifests")


# -- text lines -------------------------------------------------------------------------------------

NASTY = [b"\x1b[", b"\x1b]0;", b"\x07", b"\x1b\\", b"\xc2\x9b", b"\xc2\x9d", b"\r", b"\n", b"\x00", b"\t",
         b"\xe2\x80\xae", b"\xef\xbb\xbf", b"\xff", b"\xed\xa0\x80", b"31m", b";", b"lights", b" on "]
TEXT = st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(NASTY), max_size=40).map(b"".join),
                 st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
                 st.integers(0, 3 * MAX_COMMAND_CHARS * 4).map(lambda n: b"y" * n))


def _text_boundary(raw: bytes, pieces: int) -> None:
    text, reason = sanitize(raw)
    assert (text is None) != (reason is None)
    if text is not None:
        assert len(text) <= MAX_COMMAND_CHARS and text == text.strip()
        assert not any(c in text for c in "\x1b\x9b\x9d\x00\x07\n\r\t")
        assert not any(0x80 <= ord(c) < 0xA0 for c in text)
    else:
        assert reason in ("not_utf8", "empty", "too_long")
    splitter = LineSplitter(cap=64)
    step = max(1, len(raw) // max(1, pieces))
    lines = [ln for i in range(0, len(raw), step) for ln in splitter.feed(raw[i : i + step])]
    last = splitter.end()
    assert all(len(ln) <= 64 for ln in lines + ([last] if last else []))
    src = StdinTextSource(stream=io.BytesIO(raw))
    for cmd in src:
        assert isinstance(cmd, Command)


def test_fuzz_text_lines():
    budget = Budget()

    @FUZZ
    @given(raw=TEXT, pieces=st.integers(1, 50))
    def case(raw: bytes, pieces: int) -> None:
        budget.cases += 1
        refused_or_fine("text line", _text_boundary, raw, pieces, budget=budget)

    case()
    budget.check("text lines")


# -- the kept corpus ----------------------------------------------------------------------------------


def test_the_kept_corpus(pkg_copy, capsys):
    """Every nasty case kept in tests/data/fuzz: refused in one line or handled, never a traceback.

    Each goes through its library boundary and through the commands a person would run on it;
    a command may succeed (0) or refuse (2), never fail as a bug (3).
    """
    from edgefusion.cli import main

    seen: dict[str, int] = {}
    for f in sorted(CORPUS.rglob("*")):
        if not f.is_file() or f.suffix == ".md":
            continue
        kind = f.relative_to(CORPUS).parts[0]
        if kind == "config":
            refused_or_fine(f.name, _config_boundary, f)
            runs = [["config", "check", str(f)], ["config", "show", str(f)]]
        elif kind == "mcap":
            refused_or_fine(f.name, read_everything, f)
            runs = [["log", "info", str(f)], ["replay", str(f), "--model", "smart_home", "--backend", "null"],
                    ["replay", str(f), "--model", "smart_home", "--backend", "null", "--allow-gaps"]]
        elif kind == "manifest":
            (pkg_copy / "manifest.json").write_bytes(f.read_bytes())
            refused_or_fine(f.name, _package_boundary, pkg_copy)
            runs = [["info", str(pkg_copy)]]
        else:
            for line in f.read_bytes().split(b"\n"):
                refused_or_fine(f.name, _text_boundary, line, 3)
            runs = []
        for argv in runs:
            with bounded(" ".join(argv)):
                status = main(argv)
            err = capsys.readouterr().err
            assert status in (0, 2), (argv, err)
            assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.startswith("error:")]) <= 1
        seen[kind] = seen.get(kind, 0) + 1
    assert min(seen.values()) >= 3 and len(seen) == 4, seen
