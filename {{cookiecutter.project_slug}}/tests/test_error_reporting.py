"""Unhandled errors reach Sentry (its ingest stood in for on 127.0.0.1) with their context, no secret."""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from {{ cookiecutter.package_name }}.chassis.config import secret_values, section, setting
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    BuildSettings,
    SentrySettings,
    Settings,
)

from .apps import create_test_app

SECRET = "hunter2-do-not-leak"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class _Ingest(BaseHTTPRequestHandler):
    envelopes: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.envelopes.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def sentry_dsn() -> Iterator[str]:
    """A DSN whose ingest is a local server keeping every envelope it gets."""
    _Ingest.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://public-key@127.0.0.1:{server.server_port}/42"
    server.shutdown()
    server.server_close()


@section
class DemoSecrets:
    token: str = setting(default=SECRET, help="A secret.", secret=True)


@dataclasses.dataclass(frozen=True)
class SettingsWithASecret(Settings):
    demo: DemoSecrets = dataclasses.field(default_factory=DemoSecrets)


def events(envelopes: list[bytes]) -> list[dict[str, Any]]:
    """The events of the envelopes (each a header line, then item header and payload lines)."""
    found = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                found.append(json.loads(payload))
    return found


async def test_an_unhandled_error_is_reported_with_its_context_and_no_secret(sentry_dsn: str) -> None:
    settings = SettingsWithASecret(
        sentry=SentrySettings(dsn=sentry_dsn, environment="staging"),
        build=BuildSettings(commit="abc1234"),
    )
    app = create_test_app(settings)

    async def broken(thing_id: int) -> dict[str, str]:
        password = SECRET  # a local variable: never sent
        raise RuntimeError(f"could not log in with {password}")

    app.add_url_rule("/things/<int:thing_id>", "broken", broken)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        headers = {"X-Request-ID": "req-42", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        response = await app.test_client().get("/things/7", headers=headers)
        assert response.status_code == 500
    # Leaving the app flushed the reports.
    raw = b"".join(_Ingest.envelopes)
    assert SECRET.encode() not in raw
    assert sentry_dsn.encode() not in raw
    [event] = events(_Ingest.envelopes)
    assert event["tags"] == {
        "request_id": "req-42",
        "trace_id": TRACE_ID,
        "route": "/things/<int:thing_id>",
        "method": "GET",
    }
    assert event["release"].endswith("+abc1234")
    assert event["environment"] == "staging"
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "could not log in with ***")
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])


async def test_nothing_is_reported_without_a_dsn(sentry_dsn: str) -> None:
    app = create_test_app(Settings())

    async def broken() -> dict[str, str]:
        raise RuntimeError("boom")

    app.add_url_rule("/broken", "broken", broken)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        assert (await app.test_client().get("/broken")).status_code == 500
    assert _Ingest.envelopes == []


def test_the_secrets_are_every_secret_setting_that_is_set() -> None:
    settings = SettingsWithASecret(sentry=SentrySettings(dsn="https://public-key@sentry.example/1"))
    found = secret_values(settings, ENV_PREFIX)
    assert {"https://public-key@sentry.example/1", SECRET} <= set(found)
    assert "public-key" not in found, "a URL's user name is no secret"
