"""Slow tier: projects with a broker and PostgreSQL (and Redis, with RabbitMQ), on this machine's servers.

Each is generated with verification, which finds the servers at the URLs the generated
README gives for local development and runs its whole suite against them (none skipped);
without them, ``make test`` says what it skipped and why.  Then the service runs as
processes.  The one with every backing service keeps its items across a restart and follows
PostgreSQL going away and coming back, reading the database URL from a file; a bad database
URL or a missing file stops it in one line.  A bare client of the broker, in a namespace of
the test's own, checks what reaches the broker:

- items created over HTTP arrive as CloudEvents; a command creates an item; a poison
  message is dead-lettered; a command failing every time is dead-lettered after
  ``broker.max_deliveries`` attempts;
- SIGKILL during a burst of creates, then a restart: every acknowledged item's event is
  published, none lost, each with one id however often it was published;
- the broker going away (a TCP proxy cut): readiness shows it (the service stays ready),
  requests still commit, and their events are published when it is back, without a restart;
- SIGTERM to a worker while it handles commands: each handled and acknowledged once.

The messages benchmark (``make bench`` runs it with a broker) runs too, in its shortest form:
its figures must print and parse (their values are not judged), and it leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import nats
import pytest

from brokers import BareBroker, command, server_of, url_of
from helpers import DEFAULT_PACKAGE, Render, TcpProxy, clean_env, free_port, get_json, render, wait_for_status
from servers import POSTGRES_HOST, POSTGRES_PORT, REDIS_URL, psql, throwaway_database

pytestmark = pytest.mark.slow

PREFIX = DEFAULT_PACKAGE.upper()
# RabbitMQ's project has every backing service; NATS's has no cache (its absence is checked too).
ANSWERS = {
    "rabbitmq": {"database": "postgresql", "cache": "redis", "broker": "rabbitmq"},
    "nats": {"database": "postgresql", "broker": "nats"},
}
MAX_DELIVERIES = 3
# Seconds a test waits for what the service does in the background (publish, consume).
EVENTUALLY = 20.0


@dataclasses.dataclass(frozen=True)
class BrokerProject:
    broker: str
    project: Path
    generation: Render

    @property
    def python(self) -> str:
        return str(self.project / ".venv" / "bin" / "python")


@pytest.fixture(scope="module", params=list(ANSWERS))
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BrokerProject:
    result = render(tmp_path_factory.mktemp(request.param), ANSWERS[request.param], skip_lock=False)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\n[figures] {request.param}: generation with verification took {result.seconds:.1f} s")
    return BrokerProject(request.param, result.project(), result)


@pytest.fixture(scope="module")
def test_database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@dataclasses.dataclass
class Deployment:
    """One installation of the service: its schema, its broker namespace, and how to run it."""

    generated: BrokerProject
    env: dict[str, str]
    bare: BareBroker

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.generated.python, "-m", DEFAULT_PACKAGE, *args], cwd=self.generated.project,
            env=clean_env(**{**self.env, **(env or {})}), capture_output=True, text=True, timeout=120, check=False,
        )

    @contextlib.contextmanager
    def serving(self, command_name: str = "serve", **env: str) -> Iterator[Served]:
        port = free_port()
        environment = clean_env(
            **{**self.env, **env, f"{PREFIX}_SERVER_HOST": "127.0.0.1", f"{PREFIX}_SERVER_PORT": str(port)}
        )
        process = subprocess.Popen(
            [self.generated.python, "-m", DEFAULT_PACKAGE, command_name], cwd=self.generated.project,
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        served = Served(process, f"http://127.0.0.1:{port}")
        try:
            yield served
        finally:
            if process.poll() is None:
                process.kill()
            served.stopped()


class Served:
    """A running service process, its URL, and its log read as it is written (a full pipe would block it)."""

    def __init__(self, process: subprocess.Popen[str], base: str) -> None:
        self.process = process
        self.base = base
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    def ready(self) -> float:
        return wait_for_status(self.process, f"{self.base}/health/ready")

    def stopped(self, stop_signal: int | None = None) -> str:
        """Signal the process (if asked), wait for it to exit, and return its whole log."""
        if stop_signal is not None:
            self.process.send_signal(stop_signal)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return "".join(self._lines)


@pytest.fixture
def deployment(generated: BrokerProject, test_database: str) -> Iterator[Deployment]:
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    database = test_database.rsplit("/", 1)[1]
    psql(f"CREATE SCHEMA {namespace.replace('-', '_')}", database)
    env = {
        f"{PREFIX}_DATABASE_URL": test_database,
        f"{PREFIX}_DATABASE_SCHEMA": namespace.replace("-", "_"),
        f"{PREFIX}_BROKER_URL": url_of(generated.broker, *server_of(generated.broker)),
        f"{PREFIX}_BROKER_NAMESPACE": namespace,
        f"{PREFIX}_BROKER_MAX_DELIVERIES": str(MAX_DELIVERIES),
        f"{PREFIX}_BROKER_RETRY_DELAY": "0.05",
        f"{PREFIX}_BROKER_RELAY_INTERVAL": "0.2",
        f"{PREFIX}_LOGGING_FORMAT": "json",
        f"{PREFIX}_SHUTDOWN_DELAY": "0.1",
    }
    bare = BareBroker(generated.broker, namespace)
    deployment = Deployment(generated, env, bare)
    try:
        migrated = deployment.run("migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        yield deployment
    finally:
        bare.delete()
        psql(f"DROP SCHEMA {namespace.replace('-', '_')} CASCADE", database)


def post_json(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def eventually(read: Callable[[], list], enough: Callable[[list], bool]) -> list:
    """What ``read`` returns, gathered until ``enough`` of it arrived (or ``EVENTUALLY`` passed)."""
    found: list = []
    deadline = time.monotonic() + EVENTUALLY
    while time.monotonic() < deadline:
        found += read()
        if enough(found):
            return found
        time.sleep(0.2)
    return found


def wait_until(condition: Callable[[], bool]) -> float:
    """Seconds until ``condition`` held; fails after ``EVENTUALLY``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < EVENTUALLY, "the condition never held"
        time.sleep(0.05)
    return time.monotonic() - started


def test_verification_ran_every_test_against_the_servers_the_readme_names(generated: BrokerProject) -> None:
    summary = next(line for line in generated.generation.stdout.splitlines() if "created " in line)
    assert "skipped" not in summary, summary
    assert url_of(generated.broker, "localhost", server_of(generated.broker)[1]) in summary, summary
    assert "postgresql://postgres:dev@localhost/postgres" in summary, summary
    if "cache" in ANSWERS[generated.broker]:
        assert "redis://localhost:6379/0" in summary, summary
    print(f"\n[figures] {generated.broker}: {summary.removeprefix('[pychassis] ')}")


@pytest.mark.parametrize("generated", ["rabbitmq"], indirect=True)
def test_without_servers_make_test_says_how_many_were_skipped_and_why(generated: BrokerProject) -> None:
    result = subprocess.run(
        ["make", "test", "ARGS=-q -p no:cacheprovider"],
        cwd=generated.project, env=clean_env(), capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    for server, variable in (("PostgreSQL", "DATABASE"), ("Redis", "CACHE"), ("RabbitMQ", "BROKER")):
        assert re.search(rf"\d+ tests skipped: needs {server}: .*TEST_{variable}_URL=", result.stdout), result.stdout


@pytest.mark.parametrize("generated", ["nats"], indirect=True)
def test_the_unchosen_cache_leaves_no_trace(generated: BrokerProject) -> None:
    project = generated.project
    for path in project.rglob("*"):
        if path.is_file() and not {".venv", ".git"} & set(path.parts) and path.suffix != ".lock":
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not re.search(r"redis", text, re.IGNORECASE), f"{path.relative_to(project)} mentions redis"


def test_events_out_commands_in_and_poison_dead_lettered(deployment: Deployment) -> None:
    bare = deployment.bare
    with deployment.serving() as service:
        service.ready()
        bare.watch_events()
        for number in range(3):
            assert post_json(f"{service.base}/items", {"name": f"lamp {number}", "price_cents": 100 + number}) == 201
        bare.send(command({"name": "chair", "price_cents": 4500}))
        events = eventually(bare.events, lambda found: len(found) >= 4)
        assert [event["type"] for event, _ in events] == ["items.created"] * 4
        assert sorted(event["data"]["name"] for event, _ in events) == ["chair", "lamp 0", "lamp 1", "lamp 2"]
        for event, headers in events:
            assert {"specversion", "id", "source", "type", "time", "datacontenttype", "data"} <= set(event)
            assert "traceparent" in headers
        assert get_json(f"{service.base}/items?limit=10")[1]["total"] == 4, "the command created an item"

        bare.send(b"\x00 not a CloudEvent")
        dead = eventually(bare.dead_letters, lambda found: len(found) >= 1)
        assert [body for body, _ in dead] == [b"\x00 not a CloudEvent"]
        assert str(dead[0][1]["x-dead-letter-reason"]).startswith("not a CloudEvent")


# What a red-team pass sent: once, 16 of the first took every RabbitMQ prefetch slot for good
# (a RecursionError left them unsettled) and NATS redelivered them forever; the others broke the
# runner's log line and count, or failed the inbox's insert and were retried as errors.
POISON = {
    "nested 1,100 deep": b"[" * 1100 + b"]" * 1100,
    "a lone surrogate in the id": b'{"specversion": "1.0", "id": "x\\ud800", "source": "/t", "type": "items.create"}',
    "a NUL in the id": b'{"specversion": "1.0", "id": "a\\u0000b", "source": "/t", "type": "items.create"}',
    "an id of 101 characters": json.dumps(
        {"specversion": "1.0", "id": "x" * 101, "source": "/t", "type": "items.create"}
    ).encode(),
}


@pytest.mark.hostile
def test_a_flood_of_poison_never_stalls_the_valid_commands(deployment: Deployment) -> None:
    bare = deployment.bare
    flood = [body for body in POISON.values() for _ in range(50)]
    with deployment.serving() as service:
        service.ready()
        bare.watch_events()
        started = time.monotonic()
        bare.send(command({"name": "before the flood", "price_cents": 1}))
        assert len(eventually(bare.events, lambda found: len(found) >= 1)) == 1
        normal = time.monotonic() - started
        bare.send(*flood)
        started = time.monotonic()
        bare.send(command({"name": "after the flood", "price_cents": 1}))
        (event, _), = eventually(bare.events, lambda found: len(found) >= 1)
        after_flood = time.monotonic() - started
        dead = eventually(bare.dead_letters, lambda found: len(found) >= len(flood))
        assert get_json(f"{service.base}/health/ready")[0] == 200
        log = service.stopped(signal.SIGTERM)
    assert event["data"]["name"] == "after the flood"
    assert sorted(body for body, _ in dead) == sorted(flood), "each dead-lettered once"
    assert all(str(headers["x-dead-letter-reason"]).startswith("not a CloudEvent") for _, headers in dead)
    assert '"outcome": "unsettled"' not in log
    assert '"level": "error"' not in log
    log.encode("utf-8")  # every line valid UTF-8
    print(f"\n[figures] {deployment.generated.broker}: a command {normal * 1000:.0f} ms alone, "
          f"{after_flood * 1000:.0f} ms behind {len(flood)} poison commands")
    assert after_flood < normal + 1.0


def test_a_command_that_fails_every_time_is_dead_lettered_after_max_deliveries(deployment: Deployment) -> None:
    """The database goes away: each attempt fails, and the command ends as a dead letter, once."""
    proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT)
    proxy.open()
    through_proxy = deployment.env[f"{PREFIX}_DATABASE_URL"].replace(f":{POSTGRES_PORT}/", f":{proxy.port}/")
    try:
        with deployment.serving(**{f"{PREFIX}_DATABASE_URL": through_proxy}) as service:
            service.ready()
            proxy.close()
            deployment.bare.send(command({"name": "doomed", "price_cents": 1}))
            dead = eventually(deployment.bare.dead_letters, lambda found: len(found) >= 1)
            time.sleep(1)
            dead += deployment.bare.dead_letters()
            proxy.open()
            wait_for_status(service.process, f"{service.base}/health/ready", timeout=EVENTUALLY)
            assert get_json(f"{service.base}/items")[1]["total"] == 0
            output = service.stopped(signal.SIGTERM)
    finally:
        proxy.close()
    assert len(dead) == 1, dead
    assert "DatabaseUnavailableError" in str(dead[0][1]["x-dead-letter-reason"])
    attempts = [json.loads(line) for line in output.splitlines() if '"message handled"' in line]
    assert [line["deliveries"] for line in attempts] == list(range(1, MAX_DELIVERIES + 1)), output[-3000:]
    assert [line["outcome"] for line in attempts] == ["retried"] * (MAX_DELIVERIES - 1) + ["dead_lettered"]


def test_sigkill_during_a_burst_of_creates_loses_no_acknowledged_event(deployment: Deployment) -> None:
    bare = deployment.bare
    acknowledged: list[str] = []
    with deployment.serving() as service:
        service.ready()
        bare.watch_events()
        stop = threading.Event()

        def create(worker: int) -> None:
            for number in range(10_000):
                if stop.is_set():
                    return
                name = f"item {worker}-{number}"
                try:
                    if post_json(f"{service.base}/items", {"name": name, "price_cents": 1}) == 201:
                        acknowledged.append(name)
                except OSError:
                    return

        threads = [threading.Thread(target=create, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        service.process.kill()  # SIGKILL: no drain, no flush
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert len(acknowledged) > 50, "the burst must have run for a while"

    with deployment.serving() as service:  # the restart relays what the outbox kept
        service.ready()
        events = eventually(
            bare.events, lambda found: set(acknowledged) <= {event["data"]["name"] for event, _ in found}
        )
    ids_by_name: dict[str, set[str]] = collections.defaultdict(set)
    for event, _ in events:
        ids_by_name[event["data"]["name"]].add(event["id"])
    lost = [name for name in acknowledged if name not in ids_by_name]
    assert not lost, f"{len(lost)} acknowledged items have no event, e.g. {lost[:3]}"
    assert all(len(ids) == 1 for ids in ids_by_name.values()), "an event published again keeps its id"
    print(f"\n[figures] {deployment.generated.broker}: SIGKILL after {len(acknowledged)} acknowledged creates: "
          f"{len(events)} events delivered ({len(events) - len(ids_by_name)} again), 0 lost")


def test_a_broker_outage_shows_in_readiness_and_publishing_resumes_without_a_restart(
    deployment: Deployment,
) -> None:
    bare = deployment.bare
    proxy = TcpProxy(*server_of(bare.broker))
    proxy.open()
    through_proxy = url_of(bare.broker, "127.0.0.1", proxy.port)
    try:
        with deployment.serving(**{f"{PREFIX}_BROKER_URL": through_proxy}) as service:
            service.ready()
            bare.watch_events()
            ready = f"{service.base}/health/ready"
            proxy.close()
            seconds_down = wait_until(lambda: get_json(ready)[1]["checks"]["broker.connection"]["status"] == "DOWN")
            # With the outbox, the service stays ready: changes commit, their events wait.
            assert get_json(ready)[0] == 200
            assert post_json(f"{service.base}/items", {"name": "during the outage", "price_cents": 1}) == 201
            proxy.open()
            seconds_up = wait_until(lambda: get_json(ready)[1]["checks"]["broker.connection"]["status"] == "UP")
            events = eventually(bare.events, lambda found: len(found) >= 1)
            assert [event["data"]["name"] for event, _ in events] == ["during the outage"]
    finally:
        proxy.close()
    print(f"\n[figures] {bare.broker}: broker.connection DOWN {seconds_down:.2f} s after the broker went away "
          f"(still ready), UP {seconds_up:.2f} s after it came back; the event written meanwhile was published then")


def test_sigterm_while_a_worker_handles_commands_acknowledges_each_once(deployment: Deployment) -> None:
    bare = deployment.bare
    commands = 2000
    api_only = {f"{PREFIX}_BROKER_CONSUME": "false"}
    with deployment.serving(**api_only) as api:  # declares the queues and streams
        api.ready()
        bare.send(*(command({"name": f"command {number}", "price_cents": number}) for number in range(commands)))
    outputs = []
    with deployment.serving("worker") as worker:
        worker.ready()
        assert get_json(f"{worker.base}/items")[0] == 404, "a worker serves no API"
        time.sleep(0.2)
        outputs.append(worker.stopped(signal.SIGTERM))
        assert worker.process.returncode == 0, outputs[0][-3000:]
    with deployment.serving("worker") as worker:  # another replica takes what was left
        worker.ready()
        with deployment.serving(**api_only) as api:
            api.ready()
            eventually(
                lambda: [get_json(f"{api.base}/items?limit=1")[1]["total"]], lambda totals: totals[-1] >= commands
            )
            total = get_json(f"{api.base}/items?limit=1")[1]["total"]
        outputs.append(worker.stopped(signal.SIGTERM))
    handled = [
        json.loads(line) for output in outputs for line in output.splitlines() if '"message handled"' in line
    ]
    outcomes = collections.Counter(line["outcome"] for line in handled)
    assert total == commands
    assert outcomes == {"handled": commands}, outcomes
    assert bare.dead_letters() == []
    first = sum('"message handled"' in line for line in outputs[0].splitlines())
    print(f"\n[figures] {bare.broker}: SIGTERM to a worker: it handled {first} of {commands} commands before "
          f"it stopped, the next worker the rest; each once")
    assert 0 < first < commands, "the stop came while commands were being handled"


# The messages benchmark, in its shortest form: a smoke run (every row and column printed, non-zero),
# never a timed pass/fail: the ratios and targets are printed, not asserted.

BENCH_ROWS = ["bare", "faststream", "faststream-lean", "chassis"]
ROUND = re.compile(r"^\s*1\s+(no-op|real)\s+(\S+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$")
TABLE_ROW = re.compile(r"^\| ([a-z-]+) \|((?: [\d,.]+ \|){6})$")
NAMESPACE = re.compile(r" in (bench-[0-9a-f]{12}): ")


def leftovers(broker: str, namespace: str) -> list[str]:
    """What of ``namespace`` is still on the broker: its queues and exchanges, or its streams."""

    async def rabbitmq() -> list[str]:
        left = []
        async with await aio_pika.connect(url_of(broker, *server_of(broker))) as connection:
            for kind, name in [("queue", f"{namespace}.commands"), ("queue", f"{namespace}.commands.dlq"),
                               ("queue", f"{namespace}.bare"), ("queue", f"{namespace}.faststream"),
                               ("exchange", f"{namespace}.events"), ("exchange", f"{namespace}.bare"),
                               ("exchange", f"{namespace}.faststream")]:
                channel = await connection.channel()  # closed by the broker when the name is missing
                with contextlib.suppress(aio_pika.exceptions.ChannelNotFoundEntity):
                    if kind == "queue":
                        await channel.declare_queue(name, passive=True)
                    else:
                        await channel.declare_exchange(name, passive=True)
                    left.append(f"{kind} {name}")
        return left

    async def jetstream() -> list[str]:
        connection = await nats.connect(url_of(broker, *server_of(broker)))
        try:
            streams = await connection.jetstream().streams_info()
        finally:
            await connection.close()
        return [info.config.name for info in streams if info.config.name.startswith(namespace)]

    return asyncio.run(rabbitmq() if broker == "rabbitmq" else jetstream())


def bench_schemas(database_url: str) -> list[str]:
    """The schemas of the bench's own (bench_<hex>) left in the database."""
    result = subprocess.run(
        ["psql", database_url, "-tAc", r"SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\_%'"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout.split()


def test_messages_bench_prints_every_row_and_leaves_nothing(generated: BrokerProject, test_database: str) -> None:
    broker, project, python = generated.broker, generated.project, generated.python
    started = time.monotonic()
    result = subprocess.run(
        [python, "scripts/bench_messages.py", "--broker-url", url_of(broker, *server_of(broker)),
         "--database-url", test_database, "--rounds", "1", "--messages", "200"],
        cwd=project, capture_output=True, text=True, env=clean_env(), timeout=300, check=False,
    )
    print(f"\n[figures] {broker}: the messages bench's smoke run took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rounds = [match.groups() for line in lines if (match := ROUND.match(line))]
    assert [(work, row) for work, row, *_ in rounds] == [
        (work, row) for work in ("no-op", "real") for row in BENCH_ROWS
    ], result.stdout
    for *_, rate, p50, p99, cpu in rounds:
        assert float(rate.replace(",", "")) > 0 and int(cpu) > 0, result.stdout
        assert 0 < float(p50) <= float(p99), result.stdout
    # The table of the medians: a row each, every figure (msgs/s, p99, CPU, of each handler) non-zero.
    table = {match.group(1): match.group(2) for line in lines if (match := TABLE_ROW.match(line))}
    assert list(table) == BENCH_ROWS, result.stdout
    for cells in table.values():
        figures = [float(cell.replace(",", "")) for cell in cells.strip(" |").split(" | ")]
        assert len(figures) == 6 and all(figure > 0 for figure in figures), result.stdout
    assert re.search(r"^no-op: the chassis handles \d+\.\d\d of faststream's .*; \d+\.\d\d of faststream-lean's",
                     result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^real: the chassis handles \d+\.\d\d of bare's", result.stdout, re.MULTILINE)
    parts = re.findall(r"^  (parse, validate|span of the handling|log line|metrics|inbox|the rest)", result.stdout,
                       re.MULTILINE)
    assert len(parts) == 6, result.stdout
    assert "could not delete" not in result.stderr, result.stderr

    namespace = NAMESPACE.search(lines[0])
    assert namespace is not None, lines[0]
    assert leftovers(broker, namespace.group(1)) == []
    assert bench_schemas(test_database) == []


def test_make_bench_runs_the_messages_bench_with_its_own_flags(generated: BrokerProject) -> None:
    """After the HTTP load test, whose ARGS stay its own; dry run: the real one needs wrk and a reachable broker."""
    project = generated.project
    result = subprocess.run(
        ["make", "--dry-run", "bench", "ARGS=--duration 1 --connections 4", "MESSAGES_ARGS=--rounds 1 --messages 200"],
        cwd=project, capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [line for line in result.stdout.splitlines() if "scripts/bench" in line]
    assert commands == [
        ".venv/bin/python scripts/bench.py --duration 1 --connections 4",
        ".venv/bin/python scripts/bench_messages.py --rounds 1 --messages 200",
    ]


@pytest.mark.parametrize("generated", ["rabbitmq"], indirect=True)
def test_the_service_keeps_items_across_restarts_and_follows_the_database(
    deployment: Deployment, test_database: str, tmp_path: Path
) -> None:
    """The database URL comes from a file, as a Kubernetes Secret mounted with the chart's secretFiles."""
    proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT)
    proxy.open()
    url_file = tmp_path / "database-url"
    url_file.write_text(test_database.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/") + "\n", encoding="utf-8")
    deployment.env.pop(f"{PREFIX}_DATABASE_URL")  # the file gives it: both would be refused
    env = {
        f"{PREFIX}_DATABASE_URL_FILE": str(url_file),
        f"{PREFIX}_CACHE_URL": REDIS_URL,
        f"{PREFIX}_CACHE_KEY_PREFIX": deployment.env[f"{PREFIX}_BROKER_NAMESPACE"],
    }
    try:
        with deployment.serving(**env) as service:
            service.ready()
            assert post_json(f"{service.base}/items", {"name": "lamp", "price_cents": 1999}) == 201
            assert post_json(f"{service.base}/items", {"name": "lamp", "price_cents": 1}) == 409
        with deployment.serving(**env) as service:
            service.ready()
            status, item = get_json(f"{service.base}/items/1")
            assert (status, item["name"]) == (200, "lamp"), "the item outlived the restart"
            ready = f"{service.base}/health/ready"
            proxy.close()
            seconds_down = wait_for_status(service.process, ready, 503, timeout=10)
            assert get_json(ready)[1]["checks"]["database.ping"]["status"] == "DOWN"
            assert get_json(f"{service.base}/items")[0] == 503
            proxy.open()
            seconds_up = wait_for_status(service.process, ready, 200, timeout=10)
            assert get_json(f"{service.base}/items")[0] == 200
    finally:
        proxy.close()
    print(f"\n[figures] readiness: 503 {seconds_down:.2f} s after PostgreSQL went away, "
          f"200 {seconds_up:.2f} s after it came back (no restart)")


@pytest.mark.parametrize("generated", ["rabbitmq"], indirect=True)
def test_a_bad_database_url_is_refused_without_echoing_the_password(generated: BrokerProject) -> None:
    env = clean_env(**{f"{PREFIX}_DATABASE_URL": "mysql://app:hunter2-secret@db.example.com/app"})
    result = subprocess.run(
        [generated.python, "-m", DEFAULT_PACKAGE, "config", "check"],
        cwd=generated.project, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "database.url" in lines[0]
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("generated", ["rabbitmq"], indirect=True)
def test_a_missing_secret_file_stops_the_service_naming_the_setting_and_the_file(
    generated: BrokerProject, tmp_path: Path
) -> None:
    missing = tmp_path / "database-url"
    result = subprocess.run(
        [generated.python, "-m", DEFAULT_PACKAGE],
        cwd=generated.project, env=clean_env(**{f"{PREFIX}_DATABASE_URL_FILE": str(missing)}),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()  # the service's logs are JSON: so is the line that stops it
    record = json.loads(line)
    assert (record["level"], record["event"]) == (
        "error",
        f"setting database.url: the file {missing} named by {PREFIX}_DATABASE_URL_FILE cannot be read "
        "(No such file or directory)",
    )
