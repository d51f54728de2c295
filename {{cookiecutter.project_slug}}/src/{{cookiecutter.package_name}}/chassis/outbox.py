"""The transactional outbox: events are written with the change they tell of, then relayed.

A repository calls ``Outbox.add(session, event)`` in the transaction of its change, so
the event exists if and only if the change committed.  ``OutboxRelay`` (a resource)
publishes what the outbox holds and deletes each row once the broker has confirmed it:

- at once when this process wrote an event (it wakes on commit), and every
  ``broker.relay_interval`` seconds for events other processes wrote;
- rows are taken oldest first with ``FOR UPDATE SKIP LOCKED``, so each replica relays
  rows the others are not relaying, and a row stays locked until it is published;
- a crash after publishing and before deleting publishes the event again, with the
  same CloudEvents ``id``: delivery is at least once, and consumers deduplicate by id;
- when the broker is away, rows wait in the outbox (``outbox_backlog`` and
  ``outbox_oldest_age_seconds`` show it) and are published when it is back.

On stop, the relay finishes the batch in hand and publishes what is left, within
``resources.stop_timeout``; what it cannot publish stays for the next process.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import delete, func, select
from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import OutboxRow
from .database import Database, first_line
from .events import CloudEvent, Publisher, parse_event
from .lifecycle import Resource
from .logging import Throttled, get_logger

BATCH_SIZE = 100
# Seconds between two looks at the backlog for the gauges.
GAUGE_INTERVAL = 5.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0

log = get_logger(__name__)


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.backlog = Gauge(
            "outbox_backlog",
            "Events in the outbox, not yet published.",
            registry=registry,
            multiprocess_mode="max",
        )
        self.oldest_age = Gauge(
            "outbox_oldest_age_seconds",
            "Age of the oldest event waiting in the outbox (0 when it is empty).",
            registry=registry,
            multiprocess_mode="max",
        )


class Outbox:
    """Where repositories write events, in the transaction of their change."""

    def __init__(self) -> None:
        # Set when a transaction with events committed: the relay publishes them at once.
        self.written = asyncio.Event()

    def add(self, session: AsyncSession, event: CloudEvent) -> None:
        body = event.to_json().decode()
        session.add(OutboxRow(event_id=event.id, type=event.type, body=body, headers=dict(event.headers)))
        orm_event.listen(session.sync_session, "after_commit", self._committed, once=True)

    def _committed(self, _session: object) -> None:
        self.written.set()


class OutboxRelay(Resource):
    """Publishes the outbox's events (a resource: it runs while the service does)."""

    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        publisher: Publisher,
        *,
        interval: float,
        metrics: OutboxMetrics,
    ) -> None:
        self._database = database
        self._outbox = outbox
        self._publisher = publisher
        self._interval = interval
        self._metrics = metrics
        self._failures = Throttled(log)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox relay")

    async def stop(self) -> None:
        self._stopping.set()
        self._outbox.written.set()
        if self._task is not None:
            await self._task

    async def relay(self) -> int:
        """Publish one batch of the oldest events; returns how many were published."""
        async with self._database.session() as session:
            oldest_first = select(OutboxRow).order_by(OutboxRow.id).limit(BATCH_SIZE)
            rows = (await session.scalars(oldest_first.with_for_update(skip_locked=True))).all()
            if not rows:
                return 0
            # Sent in order on one connection, confirmed together.
            outcomes = await asyncio.gather(
                *(self._publisher.publish(parse_event(row.body.encode(), row.headers)) for row in rows),
                return_exceptions=True,
            )
            published = [row.id for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
            if published:
                await session.execute(delete(OutboxRow).where(OutboxRow.id.in_(published)))
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failure is not None:
            raise failure
        return len(published)

    async def measure(self) -> None:
        """Update the backlog gauges."""
        async with self._database.session() as session:
            oldest_age = func.extract("epoch", func.now() - func.min(OutboxRow.created_at))
            backlog = select(func.count(), oldest_age).select_from(OutboxRow)
            count, age = (await session.execute(backlog)).one()
        self._metrics.backlog.set(count)
        self._metrics.oldest_age.set(max(float(age or 0), 0.0))

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        measured_at = -GAUGE_INTERVAL
        loop = asyncio.get_running_loop()
        while True:
            stopping = self._stopping.is_set()
            self._outbox.written.clear()
            try:
                published = await self.relay()
                if loop.time() - measured_at >= GAUGE_INTERVAL:
                    measured_at = loop.time()
                    await self.measure()
            except Exception as error:
                if stopping:
                    log.warning("events left in the outbox for the next process", error=first_line(error))
                    return
                self._failures.warning("relaying the outbox failed; retrying", error=first_line(error))
                await self._wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = FIRST_BACKOFF
            if published == BATCH_SIZE:
                continue  # more may be waiting
            if stopping:
                return
            await self._wait(self._interval)

    async def _wait(self, seconds: float) -> None:
        """Until an event is written (or stop is asked), at most ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.written.wait(), seconds)
