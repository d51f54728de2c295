"""Limits on each request: how large its body may be (413) and how long its handler may take (504)."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart
from quart.ctx import RequestContext
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import GatewayTimeout

from ..settings import HttpSettings


class TimeLimitedQuart(Quart):
    """A Quart app whose request handlers are cancelled after ``request_timeout`` seconds.

    The client then gets a 504 problem.  Only the handler is bounded: reading a slow
    request body is bounded separately (``BODY_TIMEOUT``, 408).
    """

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout

    async def dispatch_request(self, request_context: RequestContext | None = None) -> ResponseReturnValue:
        deadline = asyncio.timeout(self.request_timeout)
        try:
            async with deadline:
                return await super().dispatch_request(request_context)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the handler's own, not this limit
            raise GatewayTimeout(
                f"The request took longer than {self.request_timeout:g} s (setting http.request_timeout)."
            ) from None


def install_limits(app: Quart, settings: HttpSettings) -> None:
    """Bound request bodies: too large gets 413; one that arrives too slowly gets 408."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_size
    app.config["BODY_TIMEOUT"] = settings.request_timeout
