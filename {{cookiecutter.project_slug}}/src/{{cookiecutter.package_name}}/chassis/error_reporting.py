"""Exception tracking: unhandled errors reported to Sentry (``sentry.dsn``; nothing without it).

``report_error(error, ...)`` sends one event, tagged with the request id, trace id, route and
method when a request is being handled, and with the release (``<service>@<version>+<commit>``)
and ``sentry.environment``.  The error handlers report every 500{% if cookiecutter.broker != "none" %}, and the consumers every
message that failed for the last time{% endif %}.

What leaves the process is kept small and clean: no local variables, no request bodies or
headers, no breadcrumbs of logs, and every secret setting's value (and a URL's password) is
replaced by ``***`` wherever it appears, an exception's message included.  Without a DSN the
Sentry SDK is not even imported.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .lifecycle import Resource
from .logging import current_request_fields

REDACTED = "***"
FLUSH_TIMEOUT = 5.0

# Whether reports are sent: Sentry's client is one per process, as this switch is.
_reporting = False


class ErrorReporting(Resource):
    """Sentry's client, set up at start and flushed at stop, when ``dsn`` is set."""

    def __init__(self, dsn: str | None, *, environment: str, release: str, secrets: list[str]) -> None:
        self._dsn = dsn
        self._environment = environment
        self._release = release
        # Longest first, so a URL is replaced whole before the password inside it.
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    async def start(self) -> None:
        global _reporting  # the SDK's client is one per process
        if self._dsn is None:
            return
        import sentry_sdk  # only when reporting: it takes a while to import

        sentry_sdk.init(
            dsn=self._dsn,
            release=self._release,
            environment=self._environment,
            default_integrations=False,
            auto_enabling_integrations=False,
            # Sentry SDK 3's one switch for what it collects by itself: no local variables, no
            # user, no request bodies, headers, cookies or query strings.
            data_collection={
                "stack_frame_variables": False,
                "user_info": False,
                "http_bodies": [],
                "http_headers": {"request": {"mode": "off"}},
                "cookies": {"mode": "off"},
                "url_query_params": {"mode": "off"},
            },
            max_breadcrumbs=0,
            before_send=self._scrubbed,
        )
        _reporting = True

    async def stop(self) -> None:
        global _reporting
        if not _reporting:
            return
        import sentry_sdk

        _reporting = False
        await asyncio.to_thread(sentry_sdk.get_client().close, timeout=FLUSH_TIMEOUT)

    def _scrubbed(self, event: Any, _hint: Any) -> Any:
        return _without(self._secrets, event)


def report_error(error: BaseException, **tags: str | None) -> None:
    """Report ``error`` with ``tags`` and the request's ids, if reporting is on (otherwise nothing)."""
    if not _reporting:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        fields = current_request_fields()
        if fields is not None:
            scope.set_tag("request_id", fields.request_id)
            scope.set_tag("trace_id", fields.trace_id)
        for name, value in tags.items():
            if value is not None:
                scope.set_tag(name, value)
        scope.capture_exception(error)


def _without(secrets: list[str], value: Any) -> Any:
    """``value`` (an event, any JSON-like structure) with every secret replaced by ``***``."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _without(secrets, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without(secrets, item) for item in value]
    return value
