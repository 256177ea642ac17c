"""Structured logs: text or JSON lines, record coordinates on record-related lines, and a
rate limit on repeated warnings.

Code that logs about a record passes ``extra=record_fields(row, group)``; the formatters show
``service``, ``group``, ``topic``, ``partition``, ``offset`` and ``message_id`` when a line has
them. ``ferryman run --log-format json|text`` calls ``configure_logging``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal

from ferryman.records import Polled, headers_of

LogFormat = Literal["text", "json"]
FIELDS = ("service", "group", "topic", "partition", "offset", "message_id")
"""The record-related fields a line may carry, in the order they are shown."""
MESSAGE_ID = "ferryman.message-id"


def record_fields(row: Polled, group: str | None = None) -> dict[str, Any]:
    """``extra=`` for a log line about ``row`` (a Row, Polled or Record): its coordinates and
    id."""
    fields: dict[str, Any] = {"topic": row[0], "partition": row[1], "offset": row[2]}
    if group is not None:
        fields["group"] = group
    for k, v in headers_of(row[5]):
        if k == MESSAGE_ID:
            fields["message_id"] = v.decode(errors="replace")
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record fields, exc_info."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service is not None:
            line["service"] = self.service
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message [service=.. topic=.. partition=.. offset=..]``."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [f"service={self.service}"] if self.service is not None else []
        fields += [
            f"{n}={record.__dict__[n]}" for n in FIELDS if record.__dict__.get(n) is not None
        ]
        if not fields:
            return text
        first, sep, rest = text.partition("\n")
        return f"{first} [{' '.join(fields)}]{sep}{rest}"


class RateLimit(logging.Filter):
    """Lets through ``burst`` lines of one kind (logger, level, message template) per
    ``interval`` seconds at WARNING and above; the first line after a quiet spell says how
    many were suppressed. A broker outage logs a few lines a minute, not thousands."""

    def __init__(self, burst: int = 5, interval: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # window start, count, dropped
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self.interval:
                dropped = 0 if seen is None else int(seen[2])
                self._seen[key] = [now, 1, 0]
                if dropped:
                    record.msg = f"{record.msg} ({dropped} similar lines suppressed)"
                return True
            if seen[1] < self.burst:
                seen[1] += 1
                return True
            seen[2] += 1
            return False


def configure_logging(
    fmt: LogFormat = "text", level: int | str = logging.INFO, service: str | None = None
) -> logging.Handler:
    """Send ``ferryman`` logs (and the root's) to stderr as ``fmt``; returns the handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: write text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
