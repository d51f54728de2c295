"""``asyncapi``: the AsyncAPI 3.0 document of what the service publishes and consumes."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.consumers import CONSUMERS
from {{ cookiecutter.package_name }}.events import PUBLISHED_EVENTS
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX


def document(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(cli.main, ["asyncapi", *args], env=env)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.output)
    return parsed


def test_the_document_lists_every_event_and_command_with_its_data_schema() -> None:
    found = document()
    assert found["asyncapi"] == "3.0.0"
    assert found["defaultContentType"] == "application/cloudevents+json"
    operations = {(op["action"], op["channel"]["$ref"].split("/")[-1]) for op in found["operations"].values()}
    assert operations == {("send", event.name) for event in PUBLISHED_EVENTS} | {
        ("receive", consumer.command) for consumer in CONSUMERS
    }
    created = found["components"]["messages"]["items.created"]
    assert created["payload"]["properties"]["type"] == {"const": "items.created"}
    schemas = found["components"]["schemas"]
    event_data = created["payload"]["properties"]["data"]["$ref"].split("/")[-1]
    assert set(schemas[event_data]["properties"]) >= {"id", "name", "price_cents"}
    command = found["components"]["messages"]["items.create"]["payload"]["properties"]["data"]
    assert schemas[command["$ref"].split("/")[-1]]["required"] == ["name", "price_cents"]


def test_every_reference_resolves() -> None:
    found = document()

    def resolve(reference: str) -> Any:
        node: Any = found
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def references(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [ref for value in node.values() for ref in references(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in references(value)]
        return []

    for reference in references(found):
        assert resolve(reference) is not None, reference


def test_the_document_names_the_broker_without_its_credentials() -> None:
    env = {f"{ENV_PREFIX}_BROKER_URL": "{% if cookiecutter.broker == "rabbitmq" %}amqp://app:s3cret@broker.internal:5672/prod{% else %}nats://app:s3cret@broker.internal:4222{% endif %}"}
    found = document(env=env)
    assert "s3cret" not in json.dumps(found)
    assert found["servers"]["broker"]["host"] == "broker.internal:{% if cookiecutter.broker == "rabbitmq" %}5672{% else %}4222{% endif %}"
