"""Browser-facing protections: security headers on every response, and CORS when configured.

The headers are added by the instrumentation middleware as each response starts
(no per-request hook).  There is no ``Server`` version banner: both engines are
configured not to send one.  CORS is off unless ``http.cors_allow_origins`` lists
origins (or ``*``).
"""

from __future__ import annotations

from quart import Quart
from quart_cors import cors

from ..settings import HttpSettings

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


def install_cors(app: Quart, settings: HttpSettings) -> None:
    origins = [origin.strip() for origin in settings.cors_allow_origins.split(",") if origin.strip()]
    if origins:
        cors(app, allow_origin=origins, expose_headers=["X-Request-ID"])
