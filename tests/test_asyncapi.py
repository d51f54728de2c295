"""The generated AsyncAPI document, validated by the official AsyncAPI parser (fast tier).

For each broker: render, print the document with ``python -m my_service asyncapi`` run by the
template's own environment (it has every runtime dependency of the project, so nothing is
installed), and parse it with @asyncapi/parser (run by Node from tests/tools).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from helpers import DEFAULT_PACKAGE, clean_env, node_tool, render

# A broker URL with credentials, which the document must name without them.
BROKER_URLS = {
    "rabbitmq": "amqp://app:s3cret@broker.internal:5672/prod",
    "nats": "nats://app:s3cret@broker.internal:4222",
}
# What the example service publishes and consumes (events.py, consumers/items.py).
OPERATIONS = {
    ("send", "items.created"),
    ("send", "items.updated"),
    ("send", "items.deleted"),
    ("receive", "items.create"),
}


@pytest.fixture(scope="module")
def validator() -> list[str]:
    return node_tool("asyncapi-validate.mjs")


@pytest.fixture(scope="module", params=sorted(BROKER_URLS))
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, broker: str) -> Path:
    result = render(tmp_path_factory.mktemp(broker), {"broker": broker})
    assert result.returncode == 0, result.stderr
    return result.project()


@pytest.fixture(scope="module")
def document(project: Path) -> str:
    return asyncapi(project)


def installed_metadata(project: Path) -> Path:
    """A directory holding the metadata that installing the project would add.

    Its entry points add ``asyncapi`` to the entrypoint's commands (cli.py): the one thing the
    source tree alone (PYTHONPATH=src) lacks.  Written from pyproject.toml, so a command the
    project stops declaring is missing here too.
    """
    declared = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    info = project.parent / "site" / f"{DEFAULT_PACKAGE}-{declared['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    metadata = f"Metadata-Version: 2.1\nName: {declared['name']}\nVersion: {declared['version']}\n"
    (info / "METADATA").write_text(metadata, encoding="utf-8")
    groups = [
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        for group, entry_points in declared.get("entry-points", {}).items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups), encoding="utf-8")
    return info.parent


def asyncapi(project: Path, **env: str) -> str:
    """What ``python -m my_service asyncapi`` prints, run from the source tree."""
    path = os.pathsep.join([str(project / "src"), str(installed_metadata(project))])
    result = subprocess.run(
        [sys.executable, "-m", DEFAULT_PACKAGE, "asyncapi"], cwd=project,
        env=clean_env(PYTHONPATH=path, **env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def validate(validator: list[str], document: str) -> tuple[int, list[dict[str, str]]]:
    """The validator's exit code and its diagnostics: severity, code, message, path."""
    result = subprocess.run(validator, input=document, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def resolve(document: dict[str, Any], node: Any) -> Any:
    """``node``, or what its local ``$ref`` points at (following a ``$ref`` found there too)."""
    while isinstance(node, dict) and "$ref" in node:
        reference = node["$ref"]
        node = document
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
    return node


def test_the_validator_reports_a_broken_document(validator: list[str]) -> None:
    """So that a clean report below means something."""
    broken = {
        "asyncapi": "3.0.0",
        "info": {"title": "broken", "version": "1"},
        "channels": {"orders": {"address": "orders"}},
        "operations": {"publish-orders": {"action": "publish", "channel": {"$ref": "#/channels/orders"}}},
    }
    returncode, diagnostics = validate(validator, json.dumps(broken))
    assert returncode == 1
    errors = [diagnostic for diagnostic in diagnostics if diagnostic["severity"] == "error"]
    assert [error["path"] for error in errors] == ["#/operations/publish-orders/action"], diagnostics


def test_the_document_is_valid_asyncapi(validator: list[str], document: str) -> None:
    returncode, diagnostics = validate(validator, document)
    # Errors break the document; warnings point at likely mistakes.  Information and hints are
    # advice, such as moving to the newest AsyncAPI version, and are allowed.
    problems = [diagnostic for diagnostic in diagnostics if diagnostic["severity"] in ("error", "warning")]
    assert returncode == 0 and not problems, "\n".join(map(json.dumps, diagnostics))


def test_every_published_event_is_sent_and_every_command_received(document: str) -> None:
    found = json.loads(document)
    operations = set()
    for operation in found["operations"].values():
        for message in operation["messages"]:
            operations.add((operation["action"], resolve(found, message)["name"]))
    assert operations == OPERATIONS


def test_the_document_names_the_broker_without_its_credentials(broker: str, project: Path) -> None:
    url = BROKER_URLS[broker]
    document = asyncapi(project, **{f"{DEFAULT_PACKAGE.upper()}_BROKER_URL": url})
    assert json.loads(document)["servers"]["broker"]["host"].startswith("broker.internal:"), "the URL was read"
    assert url not in document
    assert "s3cret" not in document
