"""Calls to other services: one ``HttpClient`` per upstream, declared in ``settings.upstreams``.

Each client is a resource (its connection pool opens on start, closes on stop)
around an ``httpx.AsyncClient``, and every call it makes:

- is bounded: connect and read timeouts per attempt, ``total_timeout`` for the
  whole call, retries included (``UpstreamTimeoutError`` past it);
- is retried with exponential backoff and jitter (tenacity) when that is safe:
  any method when the connection failed (nothing was sent), idempotent methods
  also after timeouts, broken connections and 502/503/504 answers; a POST or
  PATCH that reached the upstream is never sent twice;
- goes through a circuit breaker: while the upstream keeps failing, calls fail
  at once with ``CircuitOpenError`` (answered as 503 by the error handlers);
{%- if cookiecutter.auth == "oidc" %}
- carries the credentials ``credentials`` names: none, the caller's token or this
  service's own (``upstream_credentials``);
{%- endif %}
- carries ``traceparent`` and ``X-Request-ID``, is a client span, and is counted
  by upstream name (never by URL) in ``http_client_requests_total`` and
  ``http_client_request_duration_seconds``; the breaker's state is the
  ``http_client_circuit_state`` gauge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..settings import UpstreamSettings, UpstreamsSettings
from .circuit_breaker import CircuitBreaker, CircuitOpenError, CircuitState
from .lifecycle import Resource, ResourceCheck
from .logging import current_request_id
from .metrics import LATENCY_BUCKETS
from .request_id import HEADER as REQUEST_ID_HEADER
from .tracing import Tracing
{%- if cookiecutter.auth == "oidc" %}
from .upstream_credentials import TokenEndpointError, credentials_for
{%- endif %}

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Answers that say "try again": an idempotent call is retried on them.
RETRY_STATUSES = frozenset({502, 503, 504})
# Failures that happen before anything is sent: safe to retry for every method.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
NO_RESPONSE = "error"  # the status label of a call that got no response
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0

__all__ = [
    "CircuitOpenError",
    "HttpClient",
    "HttpClientMetrics",
    "UpstreamError",
    "UpstreamTimeoutError",
    "Upstreams",
]


class UpstreamError(Exception):
    """A call to an upstream got no usable answer (after any retries)."""

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(f"upstream {upstream!r}: {message}")
        self.upstream = upstream


class UpstreamTimeoutError(UpstreamError):
    """A call to an upstream took longer than its ``total_timeout``."""


class HttpClientMetrics:
    """Outbound call metrics, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_client_requests_total",
            "Calls to upstream services (each attempt), by upstream, method and status code.",
            ["upstream", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_client_request_duration_seconds",
            "Time each attempt of a call to an upstream took, by upstream.",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.circuit_state = Gauge(
            "http_client_circuit_state",
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
            ["upstream"],
            registry=registry,
            multiprocess_mode="livemax",
        )


class _RetryableStatusError(Exception):
    """An idempotent call got a 'try again' answer; carries it in case no retry is left."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"status {response.status_code}")
        self.response = response


class HttpClient(Resource):
    def __init__(
        self,
        name: str,
        settings: UpstreamSettings,
        *,
        metrics: HttpClientMetrics,
        tracing: Tracing,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._metrics = metrics
        self._tracing = tracing
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
{%- if cookiecutter.auth == "oidc" %}
        self._credentials = credentials_for(settings, transport=transport)
{%- endif %}
        state_gauge = metrics.circuit_state.labels(name)
        state_gauge.set(CircuitState.CLOSED)
        self.breaker = CircuitBreaker(
            name,
            failure_threshold=settings.breaker_failures,
            cooldown=settings.breaker_cooldown,
            on_change=state_gauge.set,
        )

    async def start(self) -> None:
        settings = self._settings
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=settings.max_connections),
            transport=self._transport,
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
{%- if cookiecutter.auth == "oidc" %}
        await self._credentials.aclose()
{%- endif %}

    def health_checks(self) -> list[ResourceCheck]:
        # Not critical: an upstream's trouble must not take this service out of the load balancer.
        return [ResourceCheck("circuit", self._circuit_not_open, critical=False)]

    async def _circuit_not_open(self) -> bool:
        return self.breaker.state is not CircuitState.OPEN

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Call the upstream (``url`` is relative to its base URL); returns any response it gives.

        Raises ``CircuitOpenError`` while the circuit is open, ``UpstreamTimeoutError`` past
        ``total_timeout`` and ``UpstreamError`` when no response came (after retries).
        """
        method = method.upper()
        deadline = asyncio.timeout(self._settings.total_timeout)
        try:
            async with deadline:
                return await self._call_with_retries(method, url, dict(headers or {}), kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise UpstreamTimeoutError(
                self.name, f"no answer within {self._settings.total_timeout:g} s"
            ) from None
        except httpx.TransportError as error:
            raise UpstreamError(self.name, f"{type(error).__name__}: {error}") from error

    async def _call_with_retries(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.retries + 1),
            # "Full jitter": a random wait up to 0.1 s, 0.2 s, 0.4 s... (at most 2 s).
            wait=wait_random_exponential(multiplier=FIRST_BACKOFF, max=MAX_BACKOFF),
            retry=retry_if_exception(lambda error: _may_retry(method, error)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._attempt(method, url, headers, kwargs)
                    if method in IDEMPOTENT_METHODS and response.status_code in RETRY_STATUSES:
                        raise _RetryableStatusError(response)
                    return response
        except _RetryableStatusError as last:
            return last.response
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def _attempt(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> httpx.Response:
        if self._client is None:
            raise RuntimeError(f"the client of upstream {self.name!r} is not started")
{%- if cookiecutter.auth == "oidc" %}
        try:
            credentials = await self._credentials.headers()
        except TokenEndpointError as error:  # before the breaker: the upstream is not at fault
            raise UpstreamError(self.name, str(error)) from None
{%- endif %}
        self.breaker.before_call()
        span = self._tracing.start_client_span(self.name, method)
        request_id = current_request_id()
{%- if cookiecutter.auth == "oidc" %}
        outgoing = {**headers, **credentials, **span.headers}
{%- else %}
        outgoing = {**headers, **span.headers}
{%- endif %}
        if request_id is not None:
            outgoing[REQUEST_ID_HEADER] = request_id
        started = time.perf_counter()
        status: int | None = None
        try:
            response = await self._client.request(method, url, headers=outgoing, **kwargs)
            status = response.status_code
        except Exception:
            self.breaker.record_failure()
            raise
        except BaseException:  # cancelled: no outcome either way
            self.breaker.record_abandoned()
            raise
        finally:
            self._metrics.duration.labels(self.name).observe(time.perf_counter() - started)
            label = NO_RESPONSE if status is None else str(status)
            self._metrics.requests.labels(self.name, method, label).inc()
            span.end(status)
{%- if cookiecutter.auth == "oidc" %}
        if response.status_code == 401:
            self._credentials.refused()
{%- endif %}
        if response.status_code >= 500:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        return response


def _may_retry(method: str, error: BaseException) -> bool:
    if isinstance(error, NOT_SENT_ERRORS):
        return True
    return method in IDEMPOTENT_METHODS and isinstance(error, httpx.TransportError | _RetryableStatusError)


class Upstreams(Mapping[str, HttpClient]):
    """The clients of the upstreams declared in ``settings.upstreams``, by name.

    A handler calls one as ``part_of(current_app, Upstreams)["catalog"].get("/products/1")``.
    """

    def __init__(self, clients: Mapping[str, HttpClient]) -> None:
        self._clients = dict(clients)

    @classmethod
    def from_settings(
        cls, upstreams: UpstreamsSettings, *, metrics: HttpClientMetrics, tracing: Tracing
    ) -> Upstreams:
        """One client per upstream declared in ``upstreams``."""
        return cls(
            {
                field.name: HttpClient(
                    field.name, getattr(upstreams, field.name), metrics=metrics, tracing=tracing
                )
                for field in dataclasses.fields(upstreams)
            }
        )

    def __getitem__(self, name: str) -> HttpClient:
        return self._clients[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)
