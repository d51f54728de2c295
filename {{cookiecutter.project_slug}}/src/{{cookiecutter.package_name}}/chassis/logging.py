"""Structured logs on stdout, for the service's own loggers and the standard library's.

In ``json`` format every line is one JSON object with ``timestamp`` (ISO 8601, UTC),
``level``, ``logger``, ``event``, ``service`` and ``version``; inside a request also
``request_id``, ``trace_id`` and ``span_id``.  Hypercorn, uvicorn and any library
that logs through ``logging`` go through the same renderer, so no plain-text line
reaches stdout.  ``console`` format is for humans (coloured on a terminal).

Exceptions are rendered once, as structured tracebacks without local variables,
so no setting's value (secrets included) can leak into a log line.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ..settings import LoggingSettings

LIBRARY_LOGGERS = (
    "hypercorn.error",
    "hypercorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "asyncio",
)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestFields:
    """What every log line written while handling a request carries."""

    request_id: str
    trace_id: str
    span_id: str


# One context variable for all request fields: cheaper than binding each key separately.
_request_fields: ContextVar[RequestFields | None] = ContextVar("request_fields", default=None)
# How to build the access logger under the current configuration (set by configure_logging).
_access_logger_factory: Callable[[], Any] | None = None


def bind_request_fields(fields: RequestFields) -> None:
    """Attach ``fields`` to every log line of the current request (its task's context)."""
    _request_fields.set(fields)


def current_request_fields() -> RequestFields | None:
    return _request_fields.get()


def configure_logging(settings: LoggingSettings, *, service: str, version: str) -> None:
    """Route structlog and the standard library's logging to stdout in the chosen format."""
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    stream = sys.stdout  # every logger writes here, whatever replaces sys.stdout later

    def add_service(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event["service"] = service
        event["version"] = version
        return event

    shared: list[Processor] = [
        _add_request_fields,
        _rename_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_service,
    ]
    final: list[Processor]
    if settings.format == "console":
        final = [structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())]
    else:
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        final = [tracebacks, structlog.processors.JSONRenderer()]

    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Module-level loggers are assembled on each use, so reconfiguring (as tests do) takes
        # effect everywhere; the hot access logger is built once per app (``bound_logger``).
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    global _access_logger_factory
    if settings.format == "json":
        _access_logger_factory = partial(_json_access_logger, stream, level, service, version)
    else:
        _access_logger_factory = partial(bound_logger, "access")

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.handlers[:] = []
        library_logger.propagate = True


def get_logger(name: str) -> Any:
    """A structlog logger that names its module in the ``logger`` field.

    Safe at import time: the logger is assembled lazily, after ``configure_logging`` ran.
    (The name travels as ``logger_name`` because ``logger`` is a parameter of structlog's
    own factory; ``_rename_logger_name`` turns it into ``logger``.)
    """
    return structlog.get_logger(logger_name=name)


def bound_logger(name: str) -> Any:
    """A logger assembled now, with the current configuration: for hot paths."""
    return structlog.get_logger(logger_name=name).bind()


def access_logger() -> Any:
    """The logger for the one access line per request, built once per app.

    In JSON format it skips the general processor chain: its constant fields are bound
    once and only the timestamp, the request fields and the rendering run per line.
    """
    if _access_logger_factory is None:  # logging was never configured (e.g. in tests)
        return bound_logger("access")
    return _access_logger_factory()


def _json_access_logger(stream: TextIO, level: int, service: str, version: str) -> Any:
    chain: list[Processor] = [
        _add_request_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.JSONRenderer(),
    ]
    logger = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )
    return logger.bind(logger="access", level="info", service=service, version=version)


def _add_request_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    fields = _request_fields.get()
    if fields is not None:
        event["request_id"] = fields.request_id
        event["trace_id"] = fields.trace_id
        event["span_id"] = fields.span_id
    return event


def _rename_logger_name(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event
