"""The service's log lines: plain text, or one JSON object per line for log collectors.

Every line carries the run id, so the lines of one service start can be told apart from
those of the next (journald keeps both).

Example:
    >>> import logging
    >>> rec = logging.LogRecord("edgefusion.serve", logging.INFO, __file__, 1, "ready", None, None)
    >>> rec.created = 1.5
    >>> JsonFormatter("abc").format(rec)
    '{"t": 1.5, "level": "info", "logger": "edgefusion.serve", "run_id": "abc", "msg": "ready"}'
"""

from __future__ import annotations

import json
import logging
import sys

__all__ = ["JsonFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, run id and message."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"t": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                           "run_id": self.run_id, "msg": record.getMessage()})


def setup_logging(level: str, as_json: bool, run_id: str) -> None:
    """Route every logger to stderr at ``level`` (``info``, ...), as JSON or as text with the run id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(run_id) if as_json else
                         logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{run_id}] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
