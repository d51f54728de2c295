"""How deep arrays and objects nest in parsed JSON, found without recursion.

An HTTP body (``chassis/json_body.py``) and a message (``chassis/events.py``) nested deeper
than their limit are refused before anything walks them recursively.
"""

from __future__ import annotations

from typing import Any


def nesting_exceeds(data: Any, limit: int) -> bool:
    """Whether arrays and objects in ``data`` nest more than ``limit`` levels (without recursion)."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
