"""Sensor logs in MCAP: writing (:class:`LogWriter`), reading (:class:`LogReader`), decoding."""

from __future__ import annotations

try:
    import foxglove_schemas_protobuf  # noqa: F401
    import mcap  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in the runtime-only environment
    from edgefusion.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "mcap", "mcap", "Recording and replaying MCAP logs") from exc

from edgefusion.logs.reader import SUPPORTED, Gap, LogInfo, LogMessage, LogReader, decode
from edgefusion.logs.schemas import TOPICS
from edgefusion.logs.writer import LogWriter

__all__ = ["SUPPORTED", "TOPICS", "Gap", "LogInfo", "LogMessage", "LogReader", "LogWriter", "decode"]
