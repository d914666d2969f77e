"""A rosbag2 folder (``metadata.yaml`` and its split ``.mcap`` files) read as one log.

``ros2 bag record`` splits long recordings into several files and lists them, in order, in
``metadata.yaml``. :func:`open_log` opens such a folder as a :class:`BagReader`, which reads
the files with :class:`~edgefusion.logs.reader.LogReader` (each checked like any log) and
merges their messages in log-time order; a plain file opens as a ``LogReader``.

The folder is untrusted: ``metadata.yaml`` is read with a safe loader, every listed file
must lie inside the folder, and a storage other than MCAP (``sqlite3``) is refused with one
line saying how to convert it.

Example:
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "metadata.yaml"), "w").write("x: 1")
    >>> open_log(d)
    Traceback (most recent call last):
    ...
    edgefusion.errors.InputError: ...metadata.yaml: no rosbag2_bagfile_information (not a rosbag2 folder)
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgefusion.errors import InputError
from edgefusion.labels import LabelTrack
from edgefusion.logs.reader import Gap, LogInfo, LogMessage, LogReader
from edgefusion.logs.schemas import TOPICS

__all__ = ["BagReader", "bag_files", "open_log"]

#: metadata.yaml is small; a larger one is not a bag's
MAX_METADATA_BYTES = 4 << 20


def open_log(path: str | Path, warn: bool = True) -> LogReader | BagReader:
    """A :class:`BagReader` for a rosbag2 folder, a :class:`LogReader` for a file."""
    p = Path(path)
    if p.is_dir():
        return BagReader(p, warn=warn)
    return LogReader(p, warn=warn)


def bag_files(folder: Path) -> tuple[list[Path], dict[str, Any]]:
    """The split files of a rosbag2 folder, in recording order, and its bag information.

    Raises:
        InputError: no or unreadable ``metadata.yaml``, a storage that is not MCAP, a file outside the folder
            or missing.
    """
    meta = folder / "metadata.yaml"
    if not meta.is_file():
        raise InputError(f"{folder} is a folder without metadata.yaml (not a rosbag2 bag); pass an .mcap file")
    try:
        import yaml
    except ImportError as exc:
        from edgefusion.errors import MissingDependencyError

        raise MissingDependencyError("yaml", "ros2", "Reading rosbag2 folders") from exc
    try:
        if meta.stat().st_size > MAX_METADATA_BYTES:
            raise InputError(f"{meta}: over {MAX_METADATA_BYTES >> 20} MiB, not a bag's metadata")
        doc = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{meta}: cannot be read ({type(exc).__name__}: {str(exc)[:160]})") from exc
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise InputError(f"{meta}: no rosbag2_bagfile_information (not a rosbag2 folder)")
    storage = info.get("storage_identifier")
    if storage != "mcap":
        raise InputError(f"{meta}: storage '{storage}' is not supported (MCAP is); convert the bag with "
                         "'ros2 bag convert' to storage mcap")
    names = info.get("relative_file_paths")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"{meta}: relative_file_paths must be a non-empty list of file names")
    root = folder.resolve()
    files = []
    for n in names:
        f = (folder / n).resolve()
        if not f.is_relative_to(root):
            raise InputError(f"{meta}: file {n!r} lies outside the bag's folder; refused")
        if not f.is_file():
            raise InputError(f"{meta}: lists {n!r}, which is not in {folder}")
        files.append(f)
    return files, info


class BagReader:
    """The split files of a rosbag2 folder as one log (the interface of :class:`LogReader`).

    Example::

        with open_log("my_bag/") as r:
            for m in r.messages(topics=["/camera/image_raw"]):
                ...
    """

    def __init__(self, folder: str | Path, warn: bool = True) -> None:
        self.path = Path(folder)
        files, self.bag_info = bag_files(self.path)
        self.readers: list[LogReader] = []
        try:
            for f in files:
                self.readers.append(LogReader(f, warn=warn))
        except BaseException:
            self.close()
            raise
        first = self.readers[0]
        self.header_profile, self.header_library = first.header_profile, first.header_library
        self.recovered_messages: int | None = None

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.readers)

    @property
    def gaps(self) -> list[Gap]:
        return [g for r in self.readers for g in r.gaps]

    def verify(self) -> list[Gap]:
        for r in self.readers:
            r.verify()
        return self.gaps

    def messages(self, topics: list[str] | None = None, start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[LogMessage]:
        """Every file's messages merged in log-time order (files in their listed order among equal times)."""
        its = [r.messages(topics, start_ns, end_ns) for r in self.readers]
        yield from heapq.merge(*its, key=lambda m: m.log_time_ns)

    def labels(self, topic: str = TOPICS["labels"]) -> LabelTrack | None:
        spans = [s for r in self.readers for s in (r.labels(topic) or [])]
        return LabelTrack(spans) if spans else None

    def sample_range(self) -> tuple[int, int] | None:
        ranges = [x for x in (r.sample_range() for r in self.readers) if x is not None]
        return (min(a for a, _ in ranges), max(b for _, b in ranges)) if ranges else None

    def metadata(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for r in self.readers:
            for k, v in r.metadata().items():
                out.setdefault(k, v)
        return out

    def info(self) -> LogInfo:
        """The files' channels summed by topic, the whole time range, every gap and problem."""
        parts = [r.info() for r in self.readers]
        info = LogInfo(str(self.path), self.header_profile, self.header_library,
                       complete=all(p.complete for p in parts), file_bytes=sum(p.file_bytes for p in parts))
        per: Counter[tuple[str, str, str, str]] = Counter()
        for p in parts:
            for c in p.channels:
                per[(c["topic"], c["schema"], c["schema_encoding"], c["message_encoding"])] += c["messages"]
            info.attachments += p.attachments
            info.gaps += p.gaps
            info.problems += [f"{Path(p.path).name}: {x}" for x in p.problems]
        info.channels = [{"topic": t, "schema": s, "schema_encoding": e, "message_encoding": me, "messages": n}
                         for (t, s, e, me), n in sorted(per.items())]
        info.messages = sum(p.messages for p in parts)
        starts = [p.start_ns for p in parts if p.start_ns is not None]
        ends = [p.end_ns for p in parts if p.end_ns is not None]
        info.start_ns, info.end_ns = (min(starts) if starts else None), (max(ends) if ends else None)
        info.metadata = self.metadata()
        info.metadata["rosbag2"] = {"files": ", ".join(Path(p.path).name for p in parts),
                                    "storage": "mcap", "version": str(self.bag_info.get("version", ""))}
        recovered = [p.recovered_messages for p in parts if p.recovered_messages is not None]
        info.recovered_messages = sum(recovered) if recovered else None
        return info

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

