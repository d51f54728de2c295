"""Reading a request's JSON body so that any malformed one is the client's 400, never a 500.

Quart lets a body that is not UTF-8 become a ``UnicodeDecodeError`` and one nested
thousands of levels deep a ``RecursionError``: both would be 500s.  Here the first is a
400, and so is any body nested deeper than ``http.max_json_depth`` (which also keeps
the validation that follows shallow).  A body that is not JSON is a 400 that says what
is wrong and where (the parser's message, line and column; never the body itself).

The request class is also where a request's blueprint names are worked out once:
Quart works them out anew, an import statement included, each of the three times it
asks during a request (a few microseconds of every request to a blueprint's route).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from quart import Quart, current_app
from quart.wrappers import Request as QuartRequest
from werkzeug.exceptions import BadRequest

from ..settings import HttpSettings
from .nesting import nesting_exceeds

MAX_DEPTH_KEY = "MAX_JSON_DEPTH"
# Characters of the parser's message a 400 repeats (the standard library's are a few words).
MAX_PARSER_MESSAGE = 100


class Request(QuartRequest):
    """Quart's request, whose JSON body is valid UTF-8 and nested no deeper than the limit."""

    @cached_property
    def blueprints(self) -> list[str]:
        # First asked after routing (which sets the endpoint they come from), as Quart asks.
        return super().blueprints

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            data = await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:
            if silent:
                return None
            raise BadRequest("The request body is not valid UTF-8.") from None
        except RecursionError:
            data, too_deep = None, True
        else:
            too_deep = nesting_exceeds(data, current_app.config[MAX_DEPTH_KEY])
        if too_deep:
            if silent:
                return None
            limit = current_app.config[MAX_DEPTH_KEY]
            raise BadRequest(f"The JSON body nests deeper than {limit} levels (setting http.max_json_depth).")
        return data

    def on_json_loading_failed(self, error: Exception) -> Any:
        if isinstance(error, json.JSONDecodeError):
            # ``msg`` is the parser's words (a character of the body at most); ``doc`` is the body.
            what = error.msg[:MAX_PARSER_MESSAGE].removesuffix(" at")
            raise BadRequest(
                f"The request body is not valid JSON: {what} (line {error.lineno}, column {error.colno})."
            )
        raise BadRequest("The request body is not valid JSON.")


def install_json_body(app: Quart, settings: HttpSettings) -> None:
    app.request_class = Request
    app.config[MAX_DEPTH_KEY] = settings.max_json_depth
