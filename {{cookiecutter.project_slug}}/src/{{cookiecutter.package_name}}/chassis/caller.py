"""Who is calling: the caller a verified bearer token stands for, reached by ``current_caller()``.

``auth`` binds the caller as it admits a request; its subject and client id go into the
request's log lines and access line, its token never does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from .logging import note_caller


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the verified token's subject, client and scopes."""

    subject: str
    client_id: str | None
    scopes: frozenset[str]
    claims: Mapping[str, Any] = dataclasses.field(repr=False)
    # Forwarded to upstreams whose ``credentials`` is ``forward``; never logged.
    token: str = dataclasses.field(repr=False)


_caller: ContextVar[Caller | None] = ContextVar("caller", default=None)


def current_caller() -> Caller:
    """The caller of the request being handled; a public route has none (``RuntimeError``)."""
    caller = _caller.get()
    if caller is None:
        raise RuntimeError("no caller: the request is not being handled, or its route is public")
    return caller


def current_caller_or_none() -> Caller | None:
    """The caller of the request being handled, or ``None`` (public route, background work)."""
    return _caller.get()


def bind_caller(caller: Caller) -> None:
    """Make ``caller`` the caller of the request being handled, and name it in the logs."""
    _caller.set(caller)
    note_caller(caller.subject, caller.client_id)
