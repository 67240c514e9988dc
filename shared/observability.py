"""Logs that correlate: one line per event, and the ids that tie one job's lines together.

Every process (API, worker, Flower) calls `configure_logging(settings)` once at start. Lines go to
stderr, as JSON objects (`LOG_FORMAT=json`, python-json-logger with msgspec: `timestamp` in UTC,
ISO 8601, `level`, `logger`, `message`) or as readable console lines (`LOG_FORMAT=console`, what
`make run` shows). Both carry `request_id`, `job_id`, `task_id` and `owner` (a user id, never an
email) when the line belongs to a request or a task: those come from the `LogContext` that the
API's request wrapper and the worker's task signals bind for the duration of the work.

A request id is the client's `X-Request-ID` when it is 1-128 safe characters, else a fresh one.
It is returned in the response, stored with the job, and sent with the job's task message, so
`grep <request id>` over every process's log finds the whole life of one job.

What never goes into a line: credentials, tokens, passwords, API keys, trip details. The service's
own lines name ids only; the libraries that would log request bodies or headers at DEBUG (the Groq
SDK, httpx's transport) are held at INFO whatever LOG_LEVEL says.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.msgspec import MsgspecFormatter

from shared.settings import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "REQUEST_ID_HTTP_HEADER",
    "ContextFilter",
    "JsonFormatter",
    "LogContext",
    "bind",
    "build_handler",
    "configure_logging",
    "current_context",
    "new_request_id",
    "request_id_from",
    "unbind",
    "uvicorn_log_config",
]

#: The HTTP header a request id comes in and goes out with (API answers, webhook deliveries).
REQUEST_ID_HTTP_HEADER = "X-Request-ID"
#: The fields a line carries when its work is known, in the order console lines show them.
CONTEXT_FIELDS = ("request_id", "job_id", "task_id", "owner")
#: The name of the root handler this module installs (and replaces when called again).
HANDLER_NAME = "tripcheck"
#: uvicorn's loggers: they log through the root handler like everything else, but for its access
#: log, which the API replaces with its own (`api.observability`: route, request id, owner).
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
_UVICORN_ACCESS = "uvicorn.access"
#: Loggers whose DEBUG lines carry request bodies (trip notes) or headers (API keys).
_BODY_LOGGERS = ("groq", "httpcore", "httpx", "hpack")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


@dataclass(slots=True)
class LogContext:
    """What the current request or task is about; filled in as it becomes known."""

    request_id: str | None = None
    job_id: str | None = None
    task_id: str | None = None
    owner: str | None = None


_context: ContextVar[LogContext | None] = ContextVar("log_context", default=None)


def bind(context: LogContext) -> Token[LogContext | None]:
    """Make `context` the current one (for this task or thread) until `unbind`."""
    return _context.set(context)


def unbind(token: Token[LogContext | None]) -> None:
    _context.reset(token)


def current_context() -> LogContext | None:
    return _context.get()


def new_request_id() -> str:
    return os.urandom(16).hex()  # what secrets.token_hex(16) does, one call instead of three


def request_id_from(header: bytes | str | None) -> str:
    """The client's request id if it is 1-128 safe characters, else a new one."""
    if header:
        value = header.decode("latin-1") if isinstance(header, bytes) else header
        if _SAFE_REQUEST_ID.fullmatch(value):
            return value
    return new_request_id()


class ContextFilter(logging.Filter):
    """Adds the current `LogContext`'s known fields to each record (fields a record has win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context is not None:
            fields = record.__dict__
            for name in CONTEXT_FIELDS:
                value = getattr(context, name)
                if value is not None and name not in fields:
                    fields[name] = value
        return True


class ConsoleFormatter(logging.Formatter):
    """`12:04:05 INFO api.access request_id=… job_id=…: message`, for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        record.context = "".join(f" {name}={fields[name]}" for name in CONTEXT_FIELDS if fields.get(name))
        return super().format(record)


class JsonFormatter(MsgspecFormatter):
    """python-json-logger's msgspec formatter: `timestamp`, `level`, `logger`, `message`, then the
    record's own fields (the context's, a call's `extra`, a library's such as Celery's `data`).

    `add_fields` is python-json-logger's extension point; this one does what the library's does
    with less work per attribute (its general one renames and type-checks each of a record's two
    dozen attributes), which was a fifth of the cost of an access line: one per request, README
    "Observability".
    """

    def __init__(self) -> None:
        # uvicorn repeats its messages with terminal colours for its own formatter.
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, "color_message"])
        self._standard = frozenset(self.reserved_attrs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data.update(message_dict)
        standard = self._standard
        log_data.update(
            {name: value for name, value in record.__dict__.items() if name not in standard and name[0] != "_"}
        )


def build_handler(log_format: str, filters: Iterable[logging.Filter] = ()) -> logging.Handler:
    """The root handler: stderr, JSON or console lines, with the context fields."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter())
    for extra in filters:
        handler.addFilter(extra)
    return handler


def configure_logging(settings: Settings, filters: Iterable[logging.Filter] = ()) -> None:
    """Route every logger of this process through one handler in the configured format.

    Replaces a handler it installed before (idempotent) and leaves other handlers alone (a test
    runner's, say).
    """
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if handler.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.addHandler(build_handler(settings.observability.log_format, filters))
    level = logging.getLevelName(settings.app.log_level)
    root.setLevel(level)
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger(_UVICORN_ACCESS)
    access.handlers.clear()
    access.propagate = False
    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    logging.captureWarnings(True)  # warnings are lines in the same format, not raw stderr text
    # No line shows the caller's file and line, the thread or the process (logging's documented
    # optimisations): finding them costs about a fifth of an access line, on every request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """The same set-up as `configure_logging`, as the `log_config` uvicorn applies in each of its
    processes (its supervisor too, whose lines would otherwise be in uvicorn's own format)."""
    level = settings.app.log_level
    quiet = logging.getLevelName(max(logging.getLevelName(level), logging.INFO))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            HANDLER_NAME: {"()": "shared.observability.build_handler", "log_format": settings.observability.log_format}
        },
        "root": {"handlers": [HANDLER_NAME], "level": level},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in _UVICORN_LOGGERS},
            _UVICORN_ACCESS: {"handlers": [], "propagate": False},
            **{name: {"level": quiet} for name in _BODY_LOGGERS},
        },
    }
