"""The commands of the messaging part: ``worker`` and ``asyncapi``.

Registered as entry points of the entrypoint's commands in ``pyproject.toml``, so the
entrypoint has them exactly when the service has a broker.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry

from .. import DISTRIBUTION_NAME, __version__
from ..app import create_app
from ..chassis.asyncapi import asyncapi_document
from ..chassis.broker import Broker
from ..chassis.commands import SettingsCommand, load_or_exit, settings_options
from ..chassis.limits import TimeLimitedQuart
from ..chassis.logging import configure_logging
from ..chassis.message_metrics import MessageMetrics
from ..chassis.server import serve_or_exit
from ..chassis.tracing import Tracing
from ..events import PUBLISHED_EVENTS
from ..settings import Settings, TracingSettings
from . import CONSUMERS


def build_worker_app(settings: Settings) -> TimeLimitedQuart:
    """Set up this process (logging) and build the worker's app; runs in every worker process."""
    configure_logging(settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    return create_app(settings, api=False)


@click.command("worker", cls=SettingsCommand)
@settings_options
def worker_command(config_file: Path | None, **flags: Any) -> None:
    """Run the consumers and the outbox relay until SIGTERM or SIGINT; serve health, metrics and info only.

    They are served on management.port when it is set, else on server.port.
    """
    loaded = load_or_exit(config_file, flags, serves="worker", logs=True)
    consuming = dataclasses.replace(loaded.settings.broker, consume=True)
    settings = dataclasses.replace(loaded.settings, broker=consuming)
    configure_logging(settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    serve_or_exit(build_worker_app, settings, api=False)


@click.command("asyncapi", cls=SettingsCommand)
@settings_options
def asyncapi_command(config_file: Path | None, **flags: Any) -> None:
    """Print the AsyncAPI document (JSON) of the events the service publishes and the commands it consumes."""
    loaded = load_or_exit(config_file, flags, serves="nothing")
    broker = Broker(
        loaded.settings.broker,
        metrics=MessageMetrics(CollectorRegistry()),
        tracing=Tracing(TracingSettings(), service=DISTRIBUTION_NAME, version=__version__),  # names only
    )
    document = asyncapi_document(
        title=DISTRIBUTION_NAME,
        version=__version__,
        server=broker.asyncapi_server(),
        events=[(event, broker.event_channel(event.name)) for event in PUBLISHED_EVENTS],
        commands=[(consumer, broker.command_channel(consumer.command)) for consumer in CONSUMERS],
    )
    click.echo(json.dumps(document, indent=2))
