"""Limits on each request: its body size (413), its handler's time (504), and the end of shutdown (503)."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import GatewayTimeout, ServiceUnavailable

from ..settings import HttpSettings


class TimeLimitedQuart(Quart):
    """A Quart app whose request handlers run against a deadline.

    A handler is cancelled after ``request_timeout`` seconds (the client gets a 504
    problem), or when the shutdown grace period ends while it still runs (503: this
    instance is stopping, and a retry reaches another).  The engines are meant to end
    the grace period themselves, but Hypercorn on Python 3.12 and newer with asyncio's
    own event loop waits for every open connection instead (hypercorn#308), so a
    client sending its body slowly would hold the stopping process until SIGKILL.
    Cutting the handlers off here ends the grace period alike on every engine, loop
    and Python.  Reading a slow request body is also bounded by ``BODY_TIMEOUT`` (408).
    """

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self._deadlines: set[asyncio.Timeout] = set()
        self._grace_period_over = False

    async def dispatch_request(self, *args: Any, **kwargs: Any) -> ResponseReturnValue:
        # Passed on untouched: Quart 0.23 (Python 3.13+) gives the app context, earlier
        # versions the request context.
        deadline = asyncio.timeout(self.request_timeout)
        self._deadlines.add(deadline)
        try:
            async with deadline:
                if self._grace_period_over:
                    deadline.reschedule(asyncio.get_running_loop().time())
                return await super().dispatch_request(*args, **kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the handler's own, not one of these limits
            if self._grace_period_over:
                raise ServiceUnavailable(
                    "The service is shutting down and the request did not finish within its grace "
                    "period (setting shutdown.grace_period); send it again."
                ) from None
            raise GatewayTimeout(
                f"The request took longer than {self.request_timeout:g} s (setting http.request_timeout)."
            ) from None
        finally:
            self._deadlines.discard(deadline)

    def end_grace_period(self) -> int:
        """Cancel the handlers still running (each answers 503); returns how many there were."""
        self._grace_period_over = True
        now = asyncio.get_running_loop().time()
        for deadline in self._deadlines:
            deadline.reschedule(now)
        return len(self._deadlines)


def install_limits(app: Quart, settings: HttpSettings) -> None:
    """Bound request bodies: too large gets 413; one that arrives too slowly gets 408."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_size
    app.config["BODY_TIMEOUT"] = settings.request_timeout
