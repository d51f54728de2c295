"""Structured JSON logs on stdout, for the service's own loggers and the standard library's.

Every line is one JSON object with ``timestamp`` (ISO 8601, UTC), ``level``,
``logger``, ``event``, ``service`` and ``version``.  Hypercorn and any library
that logs through ``logging`` go through the same renderer, so no plain-text
line reaches stdout.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ..settings import LoggingSettings


def configure_logging(settings: LoggingSettings, *, service: str, version: str) -> None:
    """Route structlog and the standard library's logging to JSON lines on stdout."""
    level = logging.getLevelNamesMapping()[settings.level.upper()]

    def add_service(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event.setdefault("service", service)
        event.setdefault("version", version)
        return event

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _rename_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_service,
    ]
    renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("hypercorn.error", "hypercorn.access", "quart.app", "quart.serving", "asyncio"):
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


def _rename_logger_name(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event
