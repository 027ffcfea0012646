"""Tokens never reach a log line: `access_token=` and `ticket=` in any logged URL are redacted."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"((?:access_token|ticket)=)[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """Return `text` with every access_token and ticket value replaced."""
    return _TOKEN.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrite a record's message and arguments without token values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> None:
    """Filter the loggers that print request URLs (uvicorn's access and error logs)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
