"""Limits on each request's time and size.

- Its body: larger than ``http.max_body_size`` gets 413; one that has not arrived within
  ``http.body_timeout`` gets 408 (a slow client, not a slow service).
- Its handler, once the body is in: longer than ``http.request_timeout`` gets 504.
- The end of shutdown: a request still running when the grace period ends gets 503.
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart, request
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import GatewayTimeout, ServiceUnavailable

from ..settings import HttpSettings


class TimeLimitedQuart(Quart):
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
        self._deadlines: set[asyncio.Timeout] = set()
        self._grace_period_over = False

    async def dispatch_request(self, *args: Any, **kwargs: Any) -> ResponseReturnValue:
        # Passed on untouched: Quart 0.23 (Python 3.13+) gives the app context, earlier
        # versions the request context.
        deadline = asyncio.timeout(None)
        self._deadlines.add(deadline)
        try:
            async with deadline:
                self._refuse_after_grace_period()
                await request.get_data(cache=True)  # 413 or 408, under the body's own limits
                # Checked again: on Python 3.11 asyncio.wait_for (which reads the body) can
                # swallow a cancellation that comes as the body completes.
                self._refuse_after_grace_period()
                deadline.reschedule(asyncio.get_running_loop().time() + self.request_timeout)
                return await super().dispatch_request(*args, **kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the handler's own, not one of these limits
            self._refuse_after_grace_period()
            raise GatewayTimeout(
                f"The request took longer than {self.request_timeout:g} s (setting http.request_timeout)."
            ) from None
        finally:
            self._deadlines.discard(deadline)

    def _refuse_after_grace_period(self) -> None:
        if self._grace_period_over:
            raise ServiceUnavailable(
                "The service is shutting down and the request did not finish within its grace "
                "period (setting shutdown.grace_period); send it again."
            )

    def end_grace_period(self) -> int:
        """Cancel the requests still running (each answers 503); returns how many there were."""
        self._grace_period_over = True
        now = asyncio.get_running_loop().time()
        for deadline in self._deadlines:
            deadline.reschedule(now)
        return len(self._deadlines)


def install_limits(app: Quart, settings: HttpSettings) -> None:
    """Bound request bodies: too large gets 413; one that arrives too slowly gets 408."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_size
    app.config["BODY_TIMEOUT"] = settings.body_timeout
