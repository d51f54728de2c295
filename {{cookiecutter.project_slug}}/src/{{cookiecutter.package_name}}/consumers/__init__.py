"""The commands this service consumes: one module per consumer, each listed here once.

To add one, write ``consumers/<command>.py`` with a ``consumer = Consumer(...)`` (see
``items_create.py``) and add it to ``CONSUMERS``.  ``chassis/consumers.py`` runs them:
at least once per command, acknowledged after the handler succeeded, retried, then
dead-lettered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chassis.consumers import Consumer
from . import items_create

if TYPE_CHECKING:
    from ..services import Services

CONSUMERS: list[Consumer[Any, Services]] = [items_create.consumer]
