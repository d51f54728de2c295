"""Limits on each request's time and size.

- Its body: larger than ``http.max_body_size`` gets 413; one that has not arrived within
  ``http.body_timeout`` gets 408 (a slow client, not a slow service).
- Its handler, once the body is in: longer than ``http.request_timeout`` gets 504.
- The end of shutdown: a request still running when the grace period ends gets 503, and is
  counted as shed (``http_server_requests_shed_total{reason="shutdown"}``).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from quart import Quart, request
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import GatewayTimeout, RequestTimeout, ServiceUnavailable

from ..settings import HttpSettings
from .deadlines import Deadlines
from .host_header import HostCheckingQuart
from .instrumentation import mark_shed
from .metrics import SHED_SHUTDOWN


class TimeLimitedQuart(HostCheckingQuart):
    """A Quart app whose requests run against a deadline.

    The body is read first, so its own time limit answers 408; then the handler gets
    ``request_timeout`` seconds (504).  When the shutdown grace period ends, every
    request still running is cancelled and answered 503: this instance is stopping,
    and a retry reaches another.  Hypercorn is meant to end the grace period itself,
    but on Python 3.12 and newer with asyncio's own event loop it waits for every open
    connection instead (hypercorn#308), so a client sending its body slowly would hold
    the stopping process until SIGKILL; ending it here works alike on every loop and Python.
    """

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self._deadlines = Deadlines()
        self._grace_period_over = False

    async def dispatch_request(self, *args: Any, **kwargs: Any) -> ResponseReturnValue:
        # Passed on untouched: Quart 0.23 (Python 3.13+) gives the app context, earlier
        # versions the request context; both hold the request (read there, not through the
        # ``request`` proxy, which costs a context lookup each time).
        # One deadline serves both limits, moved on when the body is in; the body is awaited
        # directly, not through Quart's ``get_data``, whose ``asyncio.wait_for`` makes a task
        # per request on 3.11.
        request_ = args[0].request if args else request
        loop = asyncio.get_running_loop()
        body_timeout = request_.body_timeout
        deadline = self._deadlines.start(loop.time() + (math.inf if body_timeout is None else body_timeout))
        reading_body = True
        try:
            self._refuse_after_grace_period()
            await request_.body  # Quart's Body raises 413 past ``MAX_CONTENT_LENGTH``
            reading_body = False
            deadline.due = loop.time() + self.request_timeout
            return await super().dispatch_request(*args, **kwargs)
        except asyncio.CancelledError:
            if not deadline.cancelled_the_task():
                raise
            self._refuse_after_grace_period()
            if reading_body:
                raise RequestTimeout(
                    f"The request's body took longer than {body_timeout:g} s to arrive "
                    "(setting http.body_timeout)."
                ) from None
            raise GatewayTimeout(
                f"The request took longer than {self.request_timeout:g} s (setting http.request_timeout)."
            ) from None
        finally:
            self._deadlines.finish(deadline)

    def _refuse_after_grace_period(self) -> None:
        if self._grace_period_over:
            mark_shed(SHED_SHUTDOWN)  # on the dashboard: shed, not the service's own error
            raise ServiceUnavailable(
                "The service is shutting down and the request did not finish within its grace "
                "period (setting shutdown.grace_period); send it again."
            )

    def end_grace_period(self) -> int:
        """Cancel the requests still running (each answers 503); returns how many there were."""
        self._grace_period_over = True
        self._deadlines.expire_all()
        return len(self._deadlines)


def install_limits(app: Quart, settings: HttpSettings) -> None:
    """Bound request bodies: too large gets 413; one that arrives too slowly gets 408."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_size
    app.config["BODY_TIMEOUT"] = settings.body_timeout
