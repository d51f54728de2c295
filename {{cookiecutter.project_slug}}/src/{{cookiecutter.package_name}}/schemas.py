"""The data the service accepts, shared by the HTTP API and the commands it consumes.

``POST /items`` and ``PUT /items/{id}`` (``views/items.py``) take an ``ItemIn`` as their
body, and so does the ``items.create`` command as its ``data`` (``consumers/``): one model,
validated the same way wherever an item comes in.  This module imports nothing of the
service, so views and consumers can both depend on it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


def _refuse_booleans_and_text(value: object) -> object:
    """As JSON Schema says: 5 and 5.0 are integers; true and "5" are not (pydantic would convert them)."""
    if isinstance(value, bool | str):
        raise ValueError("Input should be a JSON number, not a boolean or a string")
    return value


JsonInteger = Annotated[int, BeforeValidator(_refuse_booleans_and_text)]


def _refuse_nul(value: str) -> str:
    """Databases' text columns cannot keep U+0000: refuse it as invalid input."""
    if "\x00" in value:
        raise ValueError("Text must not contain the NUL character (U+0000)")
    return value


Text = Annotated[str, AfterValidator(_refuse_nul)]


class ItemIn(BaseModel):
    """A new item."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100, description="What the item is called.")
    description: Text = Field(default="", max_length=1000)
    price_cents: JsonInteger = Field(ge=0, le=100_000_000, description="Price in cents.")
