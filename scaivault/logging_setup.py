"""Log configuration: LOG_LEVEL and LOG_FORMAT (`json`, one object per line, or `text`)."""
from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import datetime, timezone

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}

# LogRecord attributes that are not caller-supplied `extra` fields.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def safe_exception(exc_info) -> tuple[str, str]:
    """Exception type and stack frames, without the message: messages may quote request data."""
    exc_type, _, tb = exc_info
    return (exc_type.__name__ if exc_type else "Exception"), "".join(traceback.format_tb(tb))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"], entry["traceback"] = safe_exception(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei) -> str:
        name, frames = safe_exception(ei)
        return frames + name

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return base


def configure_logging(level: str, fmt: str) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._scaivault = True  # type: ignore[attr-defined]
    root.handlers = [h for h in root.handlers if not getattr(h, "_scaivault", False)] + [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for noisy in ("urllib3", "botocore", "boto3", "apscheduler", "azure", "google"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
