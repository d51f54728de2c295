"""Metrics of messages: published and consumed, by event or consumer and outcome; handling time.

Labels are bounded: event types and consumers are the ones the code declares; a message
of a type no consumer handles is counted under ``<unknown>``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

UNKNOWN = "<unknown>"
# Handling a message: 5 ms to 60 s.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MessageMetrics:
    """Message metrics, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "messages_published_total",
            "Events published to the broker, by event type and outcome (confirmed or failed).",
            ["event", "outcome"],
            registry=registry,
        )
        self.consumed = Counter(
            "messages_consumed_total",
            "Messages handled, by consumer and outcome "
            "(handled, duplicate, retried, dead_lettered, unsettled).",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.handling = Histogram(
            "message_handling_seconds",
            "Time spent handling messages, by consumer.",
            ["consumer"],
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )

        # ``labels()`` is slow; the label values are bounded, so keep each child once found.
        self._children: dict[tuple[object, ...], Any] = {}

    def published_event(self, event: str, *, confirmed: bool) -> None:
        outcome = "confirmed" if confirmed else "failed"
        self._child(self.published, event, outcome).inc()

    def consumed_message(self, consumer: str, outcome: str, seconds: float) -> None:
        self._child(self.consumed, consumer, outcome).inc()
        self._child(self.handling, consumer).observe(seconds)

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child
