"""What every test of the template shares: the order the files run in."""

from __future__ import annotations

import pytest

# The slowest files first (measured, the longest first): with `-n 2 --dist loadfile` each worker
# takes the next file when it is free, so the short ones fill in at the end and both workers
# finish close together, instead of one starting a 10-minute file when the other is nearly done.
SLOWEST_FIRST = (
    "test_pythons.py",
    "test_brokers.py",
    "test_service.py",
    "test_container.py",
    "test_upgrade_path.py",
    "test_pythons_with_servers.py",
    "test_auth.py",
    "test_readme_answers.py",
    "test_hooks.py",
    "test_tomorrow.py",
    "test_floors.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
