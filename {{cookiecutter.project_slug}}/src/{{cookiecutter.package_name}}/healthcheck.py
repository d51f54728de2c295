"""A health check for container engines, run as:

    python -m {{ cookiecutter.package_name }}.healthcheck [PATH]

It exits 0 when the service in this container answers ``PATH`` (default
``/health/live``) with 200, 1 otherwise.  It reads the port from the same settings
the service reads (environment, settings file): the management port when there is
one, else the API's.  It imports nothing heavy, so
running it every few seconds costs little.  (Slim images have no curl.)
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from .chassis.config import SettingsError
from .settings import load_settings

DEFAULT_PATH = "/health/live"
TIMEOUT_SECONDS = 2.0
# The local service is never reached through a proxy, whatever HTTP_PROXY says.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def local_url(host: str, port: int, path: str) -> str:
    """Where this container's service answers: the loopback address of the interface it binds."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - matching the setting, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def main(argv: list[str]) -> int:
    path = argv[0] if argv else DEFAULT_PATH
    try:
        settings = load_settings(serves="nothing").settings
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    port = settings.management.port or settings.server.port
    url = local_url(settings.server.host, port, path)
    try:
        with _NO_PROXY.open(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
