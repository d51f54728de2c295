"""The messaging part of the services: the broker, the items' events, and the work beside the API.

{%- if cookiecutter.database == "postgresql" %}
Events leave through the transactional outbox (``OutboxItemRepository`` writes them with
each change; the outbox relay publishes them).
{%- else %}
Events are published straight after each change (``PublishingItemRepository``).
{%- endif %}
The consumers run when ``broker.consume`` is true (``worker`` sets it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from ..chassis.broker import Broker
from ..chassis.consumers import ConsumerRunner, RetryPolicy
{%- if cookiecutter.database == "postgresql" %}
from ..chassis.database import Database
from ..chassis.inbox import DatabaseInbox
{%- endif %}
from ..chassis.lifecycle import Resource
{%- if cookiecutter.database == "none" %}
from ..chassis.memory_inbox import MemoryInbox
{%- endif %}
from ..chassis.message_metrics import MessageMetrics
{%- if cookiecutter.database == "postgresql" %}
from ..chassis.outbox import Outbox, OutboxMetrics, OutboxRelay
{%- endif %}
from ..chassis.tracing import Tracing
from ..settings import BrokerSettings
from .items import ItemRepository
{%- if cookiecutter.database == "postgresql" %}
from .outbox_items import OutboxItemRepository
{%- else %}
from .published_items import PublishingItemRepository
{%- endif %}

if TYPE_CHECKING:
    from . import Services


class Messaging:
{%- if cookiecutter.database == "postgresql" %}
    def __init__(
        self, settings: BrokerSettings, database: Database, *, registry: CollectorRegistry, tracing: Tracing
    ) -> None:
        self._settings = settings
        self._database = database
        self._registry = registry
        self._tracing = tracing
        self._metrics = MessageMetrics(registry)
        self._outbox = Outbox()
        # Without the broker, changes still commit (their events wait in the outbox): the
        # service stays ready, and readiness shows the broker's check failing.
        self.broker = Broker(settings, metrics=self._metrics, tracing=tracing, critical=False)

    def published(self, items: ItemRepository) -> ItemRepository:
        """``items``, each change writing its event to the outbox in the change's transaction."""
        return OutboxItemRepository(items, self._database, self._outbox)
{%- else %}
    def __init__(self, settings: BrokerSettings, *, registry: CollectorRegistry, tracing: Tracing) -> None:
        self._settings = settings
        self._tracing = tracing
        self._metrics = MessageMetrics(registry)
        self.broker = Broker(settings, metrics=self._metrics, tracing=tracing)

    def published(self, items: ItemRepository) -> ItemRepository:
        """``items``, each change published as an event once it is made."""
        return PublishingItemRepository(items, self.broker)
{%- endif %}

    def background(self, services: Services) -> dict[str, Resource]:
        """The work beside the API{% if cookiecutter.database == "postgresql" %}: the outbox relay, and{% else %}:{% endif %} the consumers of ``services`` (when consuming)."""
        work: dict[str, Resource] = {}
{%- if cookiecutter.database == "postgresql" %}
        work["outbox relay"] = OutboxRelay(
            self._database,
            self._outbox,
            self.broker,
            interval=self._settings.relay_interval,
            metrics=OutboxMetrics(self._registry),
        )
{%- endif %}
        if self._settings.consume:
            # Imported here: the consumers import services.items, whose package imports this module.
            from ..consumers import CONSUMERS

            work["consumers"] = ConsumerRunner(
                self.broker,
                CONSUMERS,
                services,
{%- if cookiecutter.database == "postgresql" %}
                inbox=DatabaseInbox(self._database),
{%- else %}
                inbox=MemoryInbox(),
{%- endif %}
                retries=RetryPolicy(self._settings.max_deliveries, self._settings.retry_delay),
                max_message_size=self._settings.max_message_size,
                metrics=self._metrics,
                tracing=self._tracing,
            )
        return work
