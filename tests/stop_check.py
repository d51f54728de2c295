"""Stop a running service the hard way and measure it: SIGTERM while one client keeps an idle
keep-alive connection open and another sends its request body a byte at a time, never finishing.

The settings that bound the stop come from ``STOP_SETTINGS``: the process must exit 0 within
``shutdown.delay + shutdown.grace_period + resources.stop_timeout`` plus a second; the idle
connection should close when the port closes, and the slow client should get a 503 problem when
the grace period ends (its handler's own limit, ``http.request_timeout``, is far longer).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from helpers import DEFAULT_PACKAGE

PREFIX = DEFAULT_PACKAGE.upper()
DELAY, GRACE_PERIOD, STOP_TIMEOUT = 1.0, 3.0, 2.0
STOP_LIMIT = DELAY + GRACE_PERIOD + STOP_TIMEOUT + 1
STOP_SETTINGS = {
    f"{PREFIX}_SHUTDOWN_DELAY": str(DELAY),
    f"{PREFIX}_SHUTDOWN_GRACE_PERIOD": str(GRACE_PERIOD),
    f"{PREFIX}_RESOURCES_STOP_TIMEOUT": str(STOP_TIMEOUT),
    f"{PREFIX}_HTTP_REQUEST_TIMEOUT": "120",
}


@dataclass
class Stop:
    exit_code: int | None
    seconds: float
    idle_closed_after: float | None
    slow_answer: bytes
    slow_answered_after: float | None
    output: str

    def figures(self) -> str:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.2f} s"

        status = self.slow_answer.split(b"\r\n", 1)[0].decode("latin-1") or "nothing"
        return (f"exit {self.exit_code} {self.seconds:.2f} s after SIGTERM (limit {STOP_LIMIT:g} s); "
                f"idle keep-alive closed after {seconds(self.idle_closed_after)}; "
                f"slow upload answered '{status}' after {seconds(self.slow_answered_after)}")


def stop_with_idle_and_slow_clients(process: subprocess.Popen[str], port: int) -> Stop:
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_response(idle).startswith(b"HTTP/1.1 200")
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow.sendall(b"POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n{")
    slow.settimeout(0.05)
    idle_closed: list[float] = []

    def watch_idle() -> None:
        idle.settimeout(STOP_LIMIT + 5)
        with contextlib.suppress(OSError):
            idle.recv(4096)  # returns when the server closes the connection
        idle_closed.append(time.monotonic())

    watcher = threading.Thread(target=watch_idle, daemon=True)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    watcher.start()
    answer, answered = b"", None
    while process.poll() is None and time.monotonic() - signalled < STOP_LIMIT + 5:
        with contextlib.suppress(OSError):
            slow.sendall(b" ")
        with contextlib.suppress(OSError):
            received = slow.recv(4096)
            if received and answered is None:
                answered = time.monotonic()
            answer += received
        time.sleep(0.05)
    stopped = time.monotonic()
    if process.poll() is None:
        process.kill()
    output, _ = process.communicate(timeout=30)
    watcher.join(timeout=5)
    idle.close()
    slow.close()
    exit_code = process.returncode if stopped - signalled < STOP_LIMIT + 5 else None
    return Stop(
        exit_code=exit_code,
        seconds=stopped - signalled,
        idle_closed_after=idle_closed[0] - signalled if idle_closed and idle_closed[0] < stopped else None,
        slow_answer=answer,
        slow_answered_after=None if answered is None else answered - signalled,
        output=output,
    )


def read_response(connection: socket.socket) -> bytes:
    """One whole response with a Content-Length body (it may come in several pieces)."""
    response = b""
    while b"\r\n\r\n" not in response:
        response += connection.recv(4096)
    head, body = response.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    assert length, head
    while len(body) < int(length.group(1)):
        body += connection.recv(4096)
    return response
