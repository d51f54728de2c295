"""Request ids: taken from ``X-Request-ID`` when sane, otherwise made here."""

from __future__ import annotations

import random
import re

HEADER = "X-Request-ID"
HEADER_KEY = HEADER.lower().encode("latin-1")  # as ASGI spells header names
MAX_LENGTH = 128
# Safe to echo into headers and logs: no spaces, quotes, control characters or separators.
_SANE = re.compile(r"[A-Za-z0-9._:+/=-]+")


def request_id_from(header_value: str | None) -> str:
    """The caller's id when it is sane, else a new random one (32 hex digits, like a UUID's)."""
    if header_value is not None and len(header_value) <= MAX_LENGTH and _SANE.fullmatch(header_value):
        return header_value
    # Unique, not secret: Python's generator, not a system call per request (os.urandom).
    return f"{random.getrandbits(128):032x}"
