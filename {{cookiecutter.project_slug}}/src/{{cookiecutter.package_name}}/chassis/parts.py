"""The one way the app holds its parts: stored by their type, fetched by their type.

``attach(app, health)`` stores a part; ``part_of(current_app, Health)`` fetches it,
typed, anywhere the app is at hand (handlers use ``current_app``).  A part's type is
its key, so no module keeps a key of its own and nothing is imported under an alias.
"""

from __future__ import annotations

from typing import TypeVar

from quart import Quart

Part = TypeVar("Part")


def attach(app: Quart, part: object) -> None:
    """Store ``part`` on ``app`` under its type; a second part of the same type is a mistake."""
    key = _key(type(part))
    if key in app.extensions:
        raise RuntimeError(f"the app already has a {type(part).__name__}")
    app.extensions[key] = part


def part_of(app: Quart, kind: type[Part]) -> Part:
    """The app's part of type ``kind``, as ``attach`` stored it."""
    try:
        part = app.extensions[_key(kind)]
    except KeyError:
        raise LookupError(f"the app has no {kind.__name__}; create_app attaches every part") from None
    if not isinstance(part, kind):  # a part stored under a subclass's own name is still found by it
        raise TypeError(f"the app's {kind.__name__} is a {type(part).__name__}")
    return part


def _key(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"
