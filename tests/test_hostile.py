"""The hostile tier: a generated service attacked as a red team would, over 127.0.0.1 only.

Each test reproduces a finding of the red-team pass and proves the fixed behaviour, bounded in
time: slow-header clients are cut off while the probes keep answering; oversized headers get 431
and memory stays flat; a smuggled request is never served; every client mistake is a 4xx
problem (never a 5xx, never a logged error); no response the service committed is lost across
SIGTERM under keep-alive load; a client that leaves is a 499 and a slow upload a 408; nothing a
client sent reaches the logs when the database fails, and a failing cache logs a line per
interval, not per request. Figures are printed for the README and the notes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import pytest

from helpers import DEFAULT_PACKAGE, clean_env, free_port, get_json, render, wait_for_status
from servers import REDIS_URL, psql, throwaway_database

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

PREFIX = DEFAULT_PACKAGE.upper()
SLOW_CLIENTS = 1100


def install(work: Path, answers: dict[str, object] | None = None) -> Path:
    """A project locked as a user's is, with its runtime dependencies installed into .venv (no tests run)."""
    from uv import find_uv_bin

    result = render(work, answers, skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    project = result.project()
    uv = find_uv_bin()
    subprocess.run([uv, "sync", "--locked", "--no-dev", "--quiet"], cwd=project, env=clean_env(), check=True,
                   capture_output=True, timeout=600)
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def database_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory.mktemp("hostile-db"), {"database": "postgresql", "cache": "redis"})


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def errors(self) -> list[dict]:
        return [line for line in self.lines() if line["level"] in ("error", "critical")]

    def rss_peak_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@contextlib.contextmanager
def serving(project: Path, tmp_path: Path, *, prefix: tuple[str, ...] = (), **settings: str) -> Iterator[Service]:
    """The service as a process on a free port (its log in a file), ready; killed at the end if still running."""
    port = free_port()
    env = clean_env(**{f"{PREFIX}_SERVER_HOST": "127.0.0.1", f"{PREFIX}_SERVER_PORT": str(port),
                       f"{PREFIX}_SHUTDOWN_DELAY": "0.2",
                       **{f"{PREFIX}_{name.upper()}": value for name, value in settings.items()}})
    log = tmp_path / f"service-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen([*prefix, str(project / ".venv" / "bin" / "python"), "-m", DEFAULT_PACKAGE],
                                   cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT)
    service = Service(process, port, log)
    try:
        probe_port = settings.get("management_port", str(port))  # with a management port, the probes are there
        wait_for_status(process, f"http://127.0.0.1:{probe_port}/health/ready", timeout=60)
        yield service
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def exchange(port: int, request: bytes, *, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send raw bytes; read until the server closes or goes quiet. Returns (bytes, closed by server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(request)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
    return received, True


def responses_in(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 responses in ``data`` (each with a Content-Length body)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return found


def assert_problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert json.loads(body)["status"] == expected


def test_slow_header_clients_are_cut_off_while_the_probes_keep_answering(project: Path, tmp_path: Path) -> None:
    """1,100 clients sending their headers a byte every half second, on a soft limit of 1,024 files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4 * SLOW_CLIENTS:
        pytest.skip(f"this machine allows only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's side needs them
    prefix = ("prlimit", f"--nofile=1024:{hard}", "--")
    with serving(project, tmp_path, prefix=prefix, http_keep_alive_timeout="2") as service:
        slow = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(SLOW_CLIENTS)]
        for connection in slow:
            connection.sendall(b"GET /items HTTP/1.1\r\nHost: x\r\n")
        cut_off_at: dict[int, float] = {}
        started = time.monotonic()
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for index, connection in enumerate(slow):
                    if index in cut_off_at:
                        continue
                    try:
                        connection.sendall(b"X")
                    except OSError:
                        cut_off_at[index] = time.monotonic() - started
                time.sleep(0.5)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        probes = answered = 0
        while time.monotonic() - started < 5:
            probes += 1
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=1)
                connection.request("GET", "/health/live")
                answered += connection.getresponse().status == 200
                connection.close()
            time.sleep(0.1)
        stop.set()
        thread.join()
        for connection in slow:
            connection.close()
    print(f"\n[figures] slow-header clients: probes answered {answered}/{probes}; "
          f"{len(cut_off_at)}/{SLOW_CLIENTS} cut off, the last after {max(cut_off_at.values(), default=0):.1f} s "
          f"(http.keep_alive_timeout 2 s)")
    assert answered == probes
    assert len(cut_off_at) == SLOW_CLIENTS
    assert max(cut_off_at.values()) < 4.5


def rapid_reset(port: int, streams: int) -> None:
    """An HTTP/2 rapid reset (CVE-2023-44487): ``streams`` requests, each cancelled at once."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    headers = [(":method", "GET"), (":path", "/health/live"), (":scheme", "http"), (":authority", "x")]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for stream in range(1, 2 * streams, 2):
            connection.send_headers(stream, headers, end_stream=True)
            connection.reset_stream(stream)
            if stream % 200 == 1:
                with contextlib.suppress(OSError):  # the server may close it any time now
                    sock.sendall(connection.data_to_send())
        with contextlib.suppress(OSError):
            sock.sendall(connection.data_to_send())
            sock.recv(65536)


def test_an_http2_rapid_reset_closes_the_connection_and_logs_one_warning(project: Path, tmp_path: Path) -> None:
    """Each attacking connection once logged an ExceptionGroup traceback at error level."""
    with serving(project, tmp_path) as service:
        for _ in range(5):
            rapid_reset(service.port, streams=5000)
        status, _ = get_json(f"{service.base}/health/live")
        lines = service.lines()
    warnings = [line for line in lines if line["event"] == "a client broke the protocol; its connection was closed"]
    assert status == 200
    assert [line for line in lines if line["level"] in ("error", "critical")] == []
    assert len(warnings) == 1, "throttled: one line a minute"
    assert warnings[0]["level"] == "warning"
    assert "exception" not in warnings[0], "no traceback"


def test_a_file_named_for_a_setting_never_shows_its_content_nor_blocks(project: Path, tmp_path: Path) -> None:
    """LOGGING_LEVEL_FILE=/proc/self/environ once printed every secret of the environment; a FIFO hung."""
    fifo = tmp_path / "port"
    os.mkfifo(fifo)
    python = str(project / ".venv" / "bin" / "python")
    for variable, path, complaint in (
        ("LOGGING_LEVEL_FILE", "/proc/self/environ", "(the file's content, not shown)"),
        ("SERVER_PORT_FILE", str(fifo), "cannot be read (not a regular file)"),
    ):
        env = clean_env(**{f"{PREFIX}_{variable}": path, "CANARY_SECRET": "hunter2-canary"})
        check = subprocess.run([python, "-m", DEFAULT_PACKAGE, "config", "check"], cwd=project, env=env,
                               capture_output=True, text=True, timeout=10, check=False)
        assert check.returncode == 2, check.stdout + check.stderr
        assert complaint in check.stderr
        assert "hunter2-canary" not in check.stdout + check.stderr
        assert len(check.stderr.strip().splitlines()) == 1


def test_with_a_hard_limit_of_1024_files_slow_clients_leave_room_for_the_probes(
    project: Path, tmp_path: Path
) -> None:
    """1,100 slow-header clients where the process cannot raise its limit: probes once failed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4 * SLOW_CLIENTS:
        pytest.skip(f"this machine allows only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's side needs them
    management = free_port()
    prefix = ("prlimit", "--nofile=1024:1024", "--")
    with serving(project, tmp_path, prefix=prefix, http_keep_alive_timeout="3",
                 management_port=str(management)) as service:
        slow = []
        for _ in range(SLOW_CLIENTS):
            with contextlib.suppress(OSError):
                connection = socket.create_connection(("127.0.0.1", service.port), timeout=2)
                connection.sendall(b"GET /items HTTP/1.1\r\nHost: x\r\n")
                slow.append(connection)
        started = time.monotonic()
        probes = answered = 0
        while time.monotonic() - started < 4:
            probes += 1
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", management, timeout=1)
                connection.request("GET", "/health/live")
                answered += connection.getresponse().status == 200
                connection.close()
            time.sleep(0.1)
        for connection in slow:
            connection.close()
        time.sleep(0.5)
        api_status, _ = get_json(f"{service.base}/items")
        lines = service.lines()
    capped = [line for line in lines if line["event"].startswith("the API's open connections reached their cap")]
    print(f"\n[figures] 1,100 slow clients, hard limit 1,024 files: management probes answered {answered}/{probes}; "
          f"API connections capped at {capped[0]['cap'] if capped else '-'}")
    assert answered == probes
    assert api_status == 200
    assert len(capped) == 1, "one line a minute"
    assert [line for line in lines if line["level"] in ("error", "critical")] == []


def test_oversized_headers_get_431_and_memory_stays_flat(project: Path, tmp_path: Path) -> None:
    """Four clients each streaming 30 MB of header lines (the red team's attack)."""
    with serving(project, tmp_path) as service:
        before = service.rss_mb()
        answers = []
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", service.port), timeout=5) as connection:
                connection.sendall(b"GET /items HTTP/1.1\r\nHost: x\r\n")
                sent = 0
                with contextlib.suppress(OSError):
                    while sent < 30_000_000:
                        connection.sendall(b"X-Filler: " + b"f" * 65_000 + b"\r\n")
                        sent += 65_012
                received = b""
                with contextlib.suppress(OSError):
                    while chunk := connection.recv(65536):
                        received += chunk
                answers.append((sent, received))
        peak = service.rss_peak_mb()
    print(f"\n[figures] oversized headers: answered {[responses_in(r)[0][0] for _, r in answers]} after "
          f"{[round(s / 1e6, 2) for s, _ in answers]} MB sent; RSS {before:.0f} MB before, peak {peak:.0f} MB")
    for sent, received in answers:
        assert sent < 30_000_000, "the server stopped reading long before 30 MB"
        assert_problem(*responses_in(received)[0], 431)
    assert peak - before < 30


def test_a_smuggled_request_is_never_served(project: Path, tmp_path: Path) -> None:
    """Content-Length and Transfer-Encoding together, then a second request hidden in the body."""
    smuggled = (b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 6\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    with serving(project, tmp_path) as service:
        received, closed = exchange(service.port, smuggled)
        time.sleep(0.5)  # anything the smuggled request caused is logged by now
        lines = service.lines()
    answers = responses_in(received)
    assert len(answers) == 1, received
    assert_problem(*answers[0], 400)
    assert answers[0][1]["connection"] == "close"
    assert closed
    assert [line["path"] for line in lines if line.get("logger") == "access"] == ["/items"]


CLIENT_MISTAKES = {
    "JSON nested 1,000 levels": ("POST", "/items", "[" * 1000 + "]" * 1000, 400),
    "JSON nested 100,000 levels": ("POST", "/items", "[" * 100_000 + "]" * 100_000, 400),
    "a NUL in a name": ("POST", "/items", '{"name": "a\\u0000b", "price_cents": 1}', 422),
    "an id past 2^63": ("GET", f"/items/{2**63}", None, 404),
    "an offset past 2^63": ("GET", f"/items?offset={2**63}", None, 422),
    "60,000 unknown keys": ("POST", "/items", json.dumps({f"k{i}": i for i in range(60_000)}), 422),
}
RAW_MISTAKES = {
    "a WebSocket upgrade": (b"GET /items HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    "an unknown Transfer-Encoding": (b"POST /items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "two Host headers": (b"GET /items HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "no Host header": (b"GET /items HTTP/1.1\r\n\r\n", 400),
    # Werkzeug cannot bind its URL map to these names: once a 500 with an empty body and a traceback.
    "a Host with an empty label": (b"GET /health/live HTTP/1.1\r\nHost: a..b\r\n\r\n", 400),
    "a Host that is a dot": (b"GET /items HTTP/1.1\r\nHost: .\r\n\r\n", 400),
    "a Host label of 64 characters": (b"GET /items HTTP/1.1\r\nHost: " + b"x" * 64 + b".example\r\n\r\n", 400),
}


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.fixture(scope="module")
def migrated_database_url(database_project: Path, database_url: str) -> str:
    """The throwaway database with the service's tables (its default schema), migrated once."""
    migrate = subprocess.run([str(database_project / ".venv" / "bin" / "python"), "-m", DEFAULT_PACKAGE, "migrate"],
                             cwd=database_project, env=clean_env(**{f"{PREFIX}_DATABASE_URL": database_url}),
                             capture_output=True, text=True, timeout=120, check=False)
    assert migrate.returncode == 0, migrate.stderr
    return database_url


def test_every_client_mistake_is_a_4xx_problem_and_no_logged_error(
    database_project: Path, migrated_database_url: str, tmp_path: Path
) -> None:
    database_url = migrated_database_url
    settings = {"database_url": database_url, "cache_url": REDIS_URL, "cache_key_prefix": uuid.uuid4().hex}
    sizes = {}
    with serving(database_project, tmp_path, **settings) as service:
        for name, (method, path, body, expected) in CLIENT_MISTAKES.items():
            connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            sizes[name] = len(answer)
            headers = {key.lower(): value for key, value in response.getheaders()}
            assert_problem(response.status, headers, answer, expected)
            connection.close()
        for name, (request, expected) in RAW_MISTAKES.items():
            received, _ = exchange(service.port, request, wait=2)
            assert_problem(*responses_in(received)[0], expected)
        errors = service.errors()
    assert errors == [], errors
    print(f"\n[figures] 60,000 unknown keys ({len(CLIENT_MISTAKES['60,000 unknown keys'][2]) / 1e3:.0f} kB): "
          f"a {sizes['60,000 unknown keys'] / 1e3:.1f} kB 422")
    assert sizes["60,000 unknown keys"] < 5_000


@dataclass
class Load:
    """Clients posting items on keep-alive connections; what each sent and what came back."""

    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    sent: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            request_id = uuid.uuid4().hex
            body = json.dumps({"name": request_id, "price_cents": 1})
            with self.lock:
                self.sent.append(request_id)
            try:
                connection.request("POST", "/items", body=body,
                                   headers={"Content-Type": "application/json", "X-Request-ID": request_id})
                response = connection.getresponse()
                response.read()
                if response.status == 201:
                    with self.lock:
                        self.created.append(request_id)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()  # as the server asked: the next request opens a new connection
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failed += 1
                connection.close()
                time.sleep(0.01)


def test_no_response_the_service_committed_is_lost_across_sigterm(project: Path, tmp_path: Path) -> None:
    """16 keep-alive clients posting continuously while the service is stopped; five runs."""
    runs = []
    for _ in range(5):
        with serving(project, tmp_path, logging_access_log="true", shutdown_delay="0.5") as service:
            load = Load(service.port)
            threads = [threading.Thread(target=load.client, daemon=True) for _ in range(16)]
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            service.process.terminate()
            assert service.process.wait(timeout=30) == 0
            load.stop.set()
            for thread in threads:
                thread.join(timeout=15)
            logged = {line["request_id"] for line in service.lines()
                      if line.get("logger") == "access" and line["status"] == 201}
        lost = logged - set(load.created)
        runs.append((len(logged), len(lost), load.failed))
        assert not lost, f"{len(lost)} requests were committed and logged but their clients never got the 201"
    print(f"\n[figures] SIGTERM under 16 keep-alive clients, five runs: committed {[r[0] for r in runs]}, "
          f"lost {[r[1] for r in runs]}, client errors after the port closed {[r[2] for r in runs]}")


def test_a_client_that_leaves_is_499_and_a_slow_upload_408(project: Path, tmp_path: Path) -> None:
    with serving(project, tmp_path, http_body_timeout="1") as service:
        leaving = socket.create_connection(("127.0.0.1", service.port))
        leaving.sendall(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"name\"")
        time.sleep(0.3)
        leaving.close()
        slow = b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        received, _ = exchange(service.port, slow, wait=5)
        time.sleep(0.3)
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
        connection.request("GET", "/metrics")
        metrics = connection.getresponse().read().decode()
    assert_problem(*responses_in(received)[0], 408)
    assert (
        'http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="499",'
        'http_route="/items"} 1.0'
    ) in metrics
    assert 'http_response_status_code="500"' not in metrics
    assert 'http_response_status_code="504"' not in metrics


def test_nothing_a_client_sent_reaches_the_logs_when_the_database_fails(
    database_project: Path, database_url: str, tmp_path: Path
) -> None:
    """A statement that fails with the client's data as its parameters (a schema without the table)."""
    schema = f"empty_{uuid.uuid4().hex[:12]}"
    database = database_url.rsplit("/", 1)[1]
    psql(f"CREATE SCHEMA {schema}", database)
    secret = f"card-4111-{uuid.uuid4().hex}"
    try:
        settings = {"database_url": database_url, "database_schema": schema, "cache_url": REDIS_URL,
                    "cache_key_prefix": uuid.uuid4().hex}
        with serving(database_project, tmp_path, **settings) as service:
            connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
            connection.request("POST", "/items", body=json.dumps({"name": secret, "price_cents": 1}),
                               headers={"Content-Type": "application/json"})
            status = connection.getresponse().status
            log = service.log.read_text(encoding="utf-8")
    finally:
        psql(f"DROP SCHEMA {schema} CASCADE", database)
    assert status == 500
    assert "relation \\\"items\\\" does not exist" in log, "the failure itself is logged"
    assert secret not in log
    assert "SQL parameters hidden" in log


def test_a_failing_cache_logs_a_line_per_interval_not_per_request(
    database_project: Path, migrated_database_url: str, tmp_path: Path
) -> None:
    database_url = migrated_database_url
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings = {"database_url": database_url, "cache_url": nothing_listens, "cache_timeout": "0.05",
                "logging_access_log": "false"}
    with serving(database_project, tmp_path, **settings) as service:
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        for _ in range(200):
            connection.request("GET", "/items/1")
            connection.getresponse().read()
        connection.request("GET", "/metrics")
        metrics = connection.getresponse().read().decode()
        warnings = [line for line in service.lines() if line["event"] == "cache call failed; carrying on without it"]
    errors = re.search(r'cache_errors_total\{operation="get"\} (\d+)', metrics)
    print(f"\n[figures] Redis down, 200 requests: {errors.group(1) if errors else '?'} cache errors counted, "
          f"{len(warnings)} log line(s)")
    assert errors and int(float(errors.group(1))) == 200
    assert len(warnings) == 1
