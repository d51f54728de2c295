"""Slow tier: generate with verification on, then run the service as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from uv import find_uv_bin

from helpers import (
    DEFAULT_PACKAGE,
    DEFAULT_SLUG,
    TEMPLATE_DIR,
    Render,
    clean_env,
    free_port,
    get_json,
    render,
    wait_for_status,
)

pytestmark = pytest.mark.slow

PREFIX = DEFAULT_PACKAGE.upper()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Render:
    """The default project, generated exactly as a user would: locked, installed, tested."""
    result = render(tmp_path_factory.mktemp("verified"), skip_lock=False)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\n[figures] generation with verification took {result.seconds:.1f} s")
    return result


@pytest.fixture(scope="module")
def project(generated: Render) -> Path:
    return generated.project()


def python_of(project: Path) -> str:
    return str(project / ".venv" / "bin" / "python")


def run_cli(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python_of(project), "-m", DEFAULT_PACKAGE, *args],
        cwd=project, capture_output=True, text=True, env=clean_env(**(env or {})), timeout=60, check=False,
    )


@pytest.fixture
def start_service(project: Path) -> Iterator:
    """Start the service (``python -m <package> ...``) on a free port; stop whatever is left at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        # A short drain delay (default 3 s): these tests have no load balancer to wait for.
        defaults = {f"{PREFIX}_SERVER_HOST": "127.0.0.1", f"{PREFIX}_SERVER_PORT": str(port), f"{PREFIX}_SHUTDOWN_DELAY": "0.2"}
        environment = clean_env(**{**defaults, **env})
        process = subprocess.Popen(
            [python_of(project), "-m", DEFAULT_PACKAGE, *args],
            cwd=project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        processes.append(process)
        return process, f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[str, str]:
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=40)
    return stdout, stderr


def test_generation_locked_installed_and_tested(generated: Render, project: Path) -> None:
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    from_the_index = [package for package in lock["package"] if "registry" in package["source"]]
    assert len(from_the_index) > 50
    for package in from_the_index:
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files and all(file["hash"].startswith("sha256:") for file in files), package["name"]
    assert "verified in" in generated.stdout
    assert (project / ".venv" / ".installed").is_file()
    # The README's "Try it" says what the default project's verification prints: kept true here.
    counts = re.search(r"tested: (\d+ passed)[;,]", generated.stdout)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert counts and f"(`{counts.group(1)}` for the default project)" in readme, counts


def exported(project: Path, *args: str) -> str:
    """uv.lock as a requirements file with hashes (what pip, or any other installer, can install)."""
    return subprocess.run(
        [find_uv_bin(), "export", "--frozen", "--no-emit-project", "--quiet", *args],
        cwd=project, capture_output=True, text=True, env=clean_env(), check=True,
    ).stdout


@pytest.mark.parametrize(
    ("platform", "python"),
    [("x86_64-unknown-linux-gnu", "3.11"), ("aarch64-unknown-linux-gnu", "3.11"),
     ("x86_64-unknown-linux-gnu", "3.13"), ("aarch64-unknown-linux-gnu", "3.13"),
     ("x86_64-unknown-linux-gnu", "3.15"), ("aarch64-unknown-linux-gnu", "3.15")],
)
def test_the_lock_installs_on_every_supported_platform(project: Path, tmp_path: Path, platform: str, python: str) -> None:
    """uv.lock holds, with hashes, what Linux x86_64 and aarch64 need on the lowest and newer Pythons."""
    for what, args in (("runtime", ("--no-dev",)), ("dev", ())):
        requirements = tmp_path / f"{what}.txt"
        requirements.write_text(exported(project, *args), encoding="utf-8")
        target = tmp_path / what
        result = subprocess.run(
            [find_uv_bin(), "pip", "install", "--quiet", "--target", str(target), "--python-platform", platform,
             "--python-version", python, "--require-hashes", "--no-deps", "-r", str(requirements)],
            cwd=project, capture_output=True, text=True, env=clean_env(), check=False,
        )
        assert result.returncode == 0, result.stderr
        assert any(target.glob("quart-*.dist-info"))
        assert any(target.glob("pytest-*.dist-info")) == (what == "dev")


def test_service_serves_and_stops_cleanly_on_sigterm(project: Path, start_service) -> None:
    process, base = start_service()
    seconds = wait_for_status(process, f"{base}/health/ready")
    print(f"\n[figures] process start to /health/ready = 200: {seconds:.2f} s")
    assert get_json(f"{base}/items") == (200, {"items": [], "total": 0, "limit": 20, "offset": 0})
    assert get_json(f"{base}/health/live") == (200, {"status": "UP"})
    stdout, stderr = stop(process)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr
    lines = stdout.splitlines()
    assert lines, "the service logs to stdout"
    for line in lines:
        record = json.loads(line)
        assert {"timestamp", "level", "event", "service", "version", "logger"} <= set(record), line
    assert any(json.loads(line)["event"] == "server stopped" for line in lines)


def test_sigint_stops_cleanly_too(project: Path, start_service) -> None:
    process, base = start_service("serve")
    wait_for_status(process, f"{base}/health/ready")
    stop(process, signal.SIGINT)
    assert process.returncode == 0


def test_two_workers_serve_and_stop(project: Path, start_service) -> None:
    process, base = start_service("--server-workers", "2")
    assert process.stdout is not None
    ready = 0
    for line in process.stdout:  # readiness over HTTP proves only one worker; wait for both
        ready += json.loads(line)["event"] == "service ready"
        if ready == 2:
            break
    for _ in range(20):
        assert get_json(f"{base}/items")[0] == 200
    stdout, stderr = stop(process)
    assert process.returncode == 0, stderr
    assert stdout.count('"event": "server stopped"') == 2


def test_stop_while_workers_are_still_starting_is_clean(project: Path, start_service) -> None:
    process, _ = start_service("--server-workers", "2")
    assert process.stdout is not None
    for line in process.stdout:  # the supervisor's handlers are in place; workers are starting
        if json.loads(line)["event"] == "workers started":
            break
    stdout, stderr = stop(process)
    assert process.returncode == 0, stdout + stderr


def test_console_script_is_installed(project: Path) -> None:
    result = subprocess.run(
        [str(project / ".venv" / "bin" / DEFAULT_SLUG), "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "0.1.0" in result.stdout


def test_config_show_reports_sources(project: Path) -> None:
    result = run_cli(project, "config", "show", "--server-workers", "3", env={f"{PREFIX}_LOGGING_LEVEL": "debug"})
    assert result.returncode == 0, result.stderr
    assert "# settings file: settings.yml" in result.stdout
    assert "  workers: 3  # cli" in result.stdout
    assert "  level: debug  # env" in result.stdout
    assert "  port: 8000  # file" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("config", "check"), {f"{PREFIX}_SERVER_PORT": "eighty"}, "server.port = 'eighty'"),
        (("serve", "--server-workers", "0"), {}, "server.workers = '0' (from --server-workers)"),
        (("serve",), {f"{PREFIX}_CONFIG": "/nonexistent.yml"}, "does not exist"),
    ],
)
def test_bad_setting_exits_2_without_traceback(project: Path, args: tuple, env: dict, expected: str) -> None:
    result = run_cli(project, *args, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    if args[0] == "serve":  # the service's logs are JSON by default: so is the line that stops it
        record = json.loads(result.stderr)
        assert record["level"] == "error" and expected in record["event"], record
    else:  # config check answers a person
        assert result.stderr.startswith("error: ") and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_taken_port_is_a_clear_error(project: Path, start_service) -> None:
    process, base = start_service()
    wait_for_status(process, f"{base}/health/ready")
    port = base.rsplit(":", 1)[1]
    result = run_cli(project, "--server-host", "127.0.0.1", "--server-port", port)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_targets_work(project: Path) -> None:
    for target in ("help", "test", "lint"):
        result = subprocess.run(["make", target], cwd=project, capture_output=True, text=True, env=clean_env(), check=False)
        assert result.returncode == 0, f"make {target}:\n{result.stdout}\n{result.stderr}"


def test_plain_pip_install_and_pytest_work_without_make_or_uv(project: Path, tmp_path: Path) -> None:
    """In a fresh virtualenv, pip installs the exported lock with hashes, then the project; its tests pass."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(exported(project), encoding="utf-8")
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    env = clean_env()
    subprocess.run([*pip, "--require-hashes", "--no-deps", "-r", str(requirements)], cwd=project, env=env, check=True)
    subprocess.run([*pip, "--no-deps", "-e", "."], cwd=project, env=env, check=True)
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generating_again_over_the_project_is_safe(generated: Render, project: Path) -> None:
    lock = (project / "uv.lock").read_bytes()
    started = time.monotonic()
    again = render(generated.output_dir, skip_lock=False, extra_args=("--overwrite-if-exists",))
    assert again.returncode == 0, again.stdout + again.stderr
    print(f"\n[figures] re-generation over the verified project took {time.monotonic() - started:.1f} s")
    assert (project / "uv.lock").read_bytes() == lock, "uv.lock changed on re-run"
    assert not (project / "tested-pins.txt").exists()


def readme_commands() -> list[str]:
    """The commands of the README's first two ``bash`` blocks, as a newcomer would paste them."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = readme.split("```bash\n")[1:3]
    return [block.split("```")[0].strip() for block in blocks]


def test_readme_generate_command_works_from_a_cold_start(tmp_path: Path) -> None:
    """The README's generate command, verbatim, in a fresh checkout with no uv and empty caches."""
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache", "build", ".work")
    shutil.copytree(Path(__file__).resolve().parents[1], checkout, ignore=ignore)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = clean_env(PATH=f"{bin_dir}:/usr/bin:/bin", XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
    generate, run = readme_commands()
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", generate], cwd=checkout, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\n[figures] README generate command, cold caches, uv bootstrapped: {seconds:.1f} s")
    project = checkout / "build" / DEFAULT_SLUG
    assert "installing uv" in result.stdout, "uv was bootstrapped, not found"
    assert (project / "uv.lock").is_file()
    assert (project / ".venv" / ".installed").is_file()
    assert run == "cd build/my-service && make run"


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_logs_are_json_with_request_and_trace_ids(project: Path, start_service) -> None:
    process, base = start_service()
    wait_for_status(process, f"{base}/health/ready")
    status, _ = fetch(f"{base}/items", {"X-Request-ID": "order-42", "traceparent": TRACEPARENT})
    assert status == 200
    assert fetch(f"{base}/no/such/thing")[0] == 404
    stdout, _ = stop(process)
    records = json_lines(stdout)  # every line is JSON: json.loads raises otherwise
    access = [record for record in records if record.get("logger") == "access"]
    # Exactly one line per request; the readiness polls are not access-logged.
    assert [(record["path"], record["route"], record["status"]) for record in access] == [
        ("/items", "/items", 200),
        ("/no/such/thing", "<unmatched>", 404),
    ]
    first = access[0]
    assert (first["request_id"], first["trace_id"]) == ("order-42", TRACE_ID)
    assert len(access[1]["request_id"]) == 32
    assert {"method", "duration_ms", "client", "span_id", "timestamp", "service", "version"} <= set(first)


def test_metrics_count_right_across_two_workers(project: Path, start_service, tmp_path: Path) -> None:
    metrics_root = tmp_path / "metrics"
    metrics_root.mkdir()
    process, base = start_service("--server-workers", "2", **{f"{PREFIX}_METRICS_MULTIPROCESS_ROOT": str(metrics_root)})
    wait_for_status(process, f"{base}/health/ready")
    for index in range(40):
        assert fetch(f"{base}/items")[0] == 200
        assert fetch(f"{base}/no/such/{index}")[0] == 404
    count = 'http_server_request_duration_seconds_count{http_request_method="GET"'
    items = f'{count},http_response_status_code="200",http_route="/items"}} 40.0'
    not_found = f'{count},http_response_status_code="404",http_route="<unmatched>"}} 40.0'
    # A request is counted just after its response is sent: a scrape the other worker answers
    # at once may come before the last one is. Within a moment, every scrape must agree.
    deadline = time.monotonic() + 5
    while not_found not in fetch(f"{base}/metrics")[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(4):  # each scrape may reach either worker: all must agree
        text = fetch(f"{base}/metrics")[1]
        assert items in text
        assert not_found in text
        assert "/no/such/1" not in text
    stdout, stderr = stop(process)
    assert process.returncode == 0, stderr
    assert list(metrics_root.iterdir()) == [], "the run's metrics folder is removed at exit"


READINESS_SCRIPT = """
import asyncio, os, sys
from {package}.cli import build_app
from {package}.chassis.health import Health
from {package}.chassis.lifecycle import Lifecycle, Resource
from {package}.chassis.parts import part_of
from {package}.chassis.server import serve
from {package}.settings import load_settings

def app_with_slow_startup_and_a_switchable_check(settings):
    app = build_app(settings)

    class SlowToStart(Resource):
        async def start(self):
            await asyncio.sleep(float(os.environ["DEMO_STARTUP_SECONDS"]))

    async def dependency_is_up():
        return not os.path.exists(os.environ["DEMO_DOWN_FILE"])

    part_of(app, Lifecycle).add("slow", SlowToStart())
    part_of(app, Health).add_check("dependency", dependency_is_up, critical=True, timeout=1.0)
    return app

sys.exit(serve(app_with_slow_startup_and_a_switchable_check, load_settings().settings))
"""


def test_readiness_states_over_http(project: Path, tmp_path: Path) -> None:
    """STARTING (503) while startup work runs, UP, DOWN while a critical check fails, UP again, exit 0."""
    script = tmp_path / "serve_demo.py"
    script.write_text(READINESS_SCRIPT.format(package=DEFAULT_PACKAGE), encoding="utf-8")
    down_file = tmp_path / "down"
    port = free_port()
    env = clean_env(
        **{f"{PREFIX}_SERVER_HOST": "127.0.0.1", f"{PREFIX}_SERVER_PORT": str(port), f"{PREFIX}_SHUTDOWN_DELAY": "0"},
        DEMO_STARTUP_SECONDS="2", DEMO_DOWN_FILE=str(down_file),
    )
    process = subprocess.Popen([python_of(project), str(script)], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_status(process, f"{base}/health/live", 200, timeout=30)
        assert get_json(f"{base}/health/ready") == (503, {"status": "STARTING", "checks": {}})
        assert get_json(f"{base}/health/startup") == (503, {"status": "STARTING"})
        wait_for_status(process, f"{base}/health/ready", 200, timeout=30)
        assert get_json(f"{base}/health/startup") == (200, {"status": "STARTED"})
        status, body = get_json(f"{base}/health/ready")
        assert body["checks"]["dependency"]["status"] == "UP"
        down_file.touch()
        status, body = get_json(f"{base}/health/ready")
        assert (status, body["status"], body["checks"]["dependency"]["status"]) == (503, "DOWN", "DOWN")
        down_file.unlink()
        assert get_json(f"{base}/health/ready")[0] == 200
        stdout, stderr = stop(process)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_info_shows_build_metadata(project: Path, start_service) -> None:
    process, base = start_service(**{f"{PREFIX}_BUILD_COMMIT": "0123abc", f"{PREFIX}_BUILD_TIME": "2026-11-22T00:00:00Z"})
    wait_for_status(process, f"{base}/health/ready")
    status, body = get_json(f"{base}/info")
    assert status == 200
    assert (body["name"], body["version"], body["commit"], body["build_time"]) == (
        DEFAULT_SLUG, "0.1.0", "0123abc", "2026-11-22T00:00:00Z")
    assert body["python"].startswith("3.")
    assert body["template_version"] == json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())["_template_version"]
    assert 'service_info{commit="0123abc"' in fetch(f"{base}/metrics")[1]
    stop(process)


def stop_process_group(process: subprocess.Popen[str], signum: int, timeout: float) -> None:
    """Signal the whole group and wait until every process in it has gone; SIGKILL what is left."""
    os.killpg(process.pid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)  # raises once no process of the group is left
        except ProcessLookupError:
            return
        time.sleep(0.1)
    left = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-s", str(process.pid)], capture_output=True,
                          text=True, check=False).stdout
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    pytest.fail(f"the process group did not stop within {timeout:g} s of {signal.Signals(signum).name}:\n{left}")


def test_make_dev_restarts_on_a_change_and_logs_for_humans(project: Path) -> None:
    port = free_port()
    app_module = project / "src" / DEFAULT_PACKAGE / "app.py"
    original = app_module.read_text(encoding="utf-8")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "dev", f"ARGS=--server-port {port}"],
        cwd=project, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()

    def ready_count() -> int:
        return sum("service ready" in line for line in list(lines))

    try:
        wait_for_status(process, f"http://127.0.0.1:{port}/health/ready")
        app_module.write_text(original + "\n# touched by the test\n", encoding="utf-8")
        deadline = time.monotonic() + 30
        while ready_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready_count() >= 2, "".join(lines)
        wait_for_status(process, f"http://127.0.0.1:{port}/health/ready")
    finally:
        # Ctrl+C, as in a terminal: to make, watchfiles and the service alike. The source is put back
        # only afterwards, so no restart races the stop.
        stop_process_group(process, signal.SIGINT, timeout=30)
        app_module.write_text(original, encoding="utf-8")
    ready_lines = [line for line in lines if "service ready" in line]
    assert not any(line.lstrip().startswith("{") for line in ready_lines), "console logs, not JSON"
    assert any("change detected" in line for line in lines)


def test_make_bench_prints_figures(project: Path) -> None:
    """The generated project's benchmark (wrk against the real service), in a short run."""
    result = subprocess.run(
        ["make", "bench", "ARGS=--duration 1 --connections 4"],
        cwd=project, capture_output=True, text=True, env=clean_env(), timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.startswith("/")}
    assert set(rows) == {"/items", "/health/live"}
    assert all(float(value) > 0 for value in rows["/items"])
    assert "memory (RSS) after load" in result.stdout
    writer, chain = map(float, re.findall(r"access line: ([\d.]+) us by its writer, ([\d.]+) us through", result.stdout)[0])
    assert 0 < writer < chain, "the access log's own writer must be cheaper than structlog's chain, or it has no reason to be"


def test_overhead_benchmark_runs(project: Path) -> None:
    """bench/compare.py (chassis against bare Quart, on Hypercorn and on uvicorn), in its shortest form."""
    result = subprocess.run(
        [sys.executable, "bench/compare.py", "--project", str(project), "--duration", "1", "--rounds", "1",
         "--connections", "4"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, env=clean_env(), timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ratios = [line for line in result.stdout.splitlines() if line.startswith("ratio on ")]
    assert len(ratios) == 2, result.stdout
    for engine, line in zip(("hypercorn", "uvicorn"), ratios, strict=True):
        assert re.fullmatch(rf"ratio on {engine}: \d\.\d\d \(chassis ready [+-]\d\.\d\d s after bare\)", line), line


FUZZ_SEED = "20261122"  # fixed, so a CI run is reproducible; change it to explore further


def test_fuzzing_the_api_finds_no_server_error_and_no_schema_violation(project: Path, start_service,
                                                                      tmp_path: Path) -> None:
    """schemathesis, every check, against the running service's own /openapi.json."""
    # Access lines off: a thousand requests would fill the stdout pipe nobody reads meanwhile.
    process, base = start_service(**{f"{PREFIX}_LOGGING_ACCESS_LOG": "false"})
    wait_for_status(process, f"{base}/health/ready")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "run", f"{base}/openapi.json", "--checks", "all", "--max-examples", "100",
         "--seed", FUZZ_SEED, "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, env=clean_env(), timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated, result.stdout
    print(f"\n[figures] schemathesis: {generated.group(1)} test cases, no failures")
    assert int(generated.group(1)) >= 300
    stdout, stderr = stop(process)
    assert process.returncode == 0, stderr
    assert '"level": "error"' not in stdout, "no request was logged as an unhandled error"


def send(url: str, method: str, body: bytes | None = None, content_type: str | None = None):
    """One request; returns (status, headers, body)."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


# Where the tests leave what a person may want to look at (gitignored); PYCHASSIS_ARTEFACTS moves it.
ARTEFACTS = Path(os.environ.get("PYCHASSIS_ARTEFACTS") or Path(__file__).resolve().parents[1] / ".artefacts")
# Chromium without a network: every request goes to a proxy that is not there, except to
# this machine's loopback (which Chromium never proxies), and no host name resolves.
OFFLINE = ["--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def chromium(*args: str) -> str:
    """Debian's Chromium, headless, with the page's scripts given 10 s of (virtual) time; returns stdout."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("needs Debian's chromium: apt-get install chromium (.ci/run installs it)")
    result = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=10000", *OFFLINE, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_api_docs_render_offline_in_headless_chromium(project: Path, start_service) -> None:
    process, base = start_service()
    wait_for_status(process, f"{base}/health/ready")
    dom = chromium("--dump-dom", f"{base}/docs")
    paths = re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom)
    assert sorted(set(paths)) == ["/items", "/items/{item_id}"], dom[-3000:]
    assert len(paths) == 5, "every operation of the API"
    assert "Failed to load API definition" not in dom
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTEFACTS / "docs.png"
    screenshot.unlink(missing_ok=True)
    chromium("--window-size=1280,900", f"--screenshot={screenshot}", f"{base}/docs")
    assert screenshot.stat().st_size > 10_000
    print(f"\n[figures] /docs rendered offline in headless Chromium: {len(paths)} operations; {screenshot}")


def test_the_api_and_its_errors_over_http(project: Path, start_service) -> None:
    """The items API works, and every error class is a problem+json with the request id."""
    process, base = start_service("--http-max-body-size", "1000")
    wait_for_status(process, f"{base}/health/ready")
    status, headers, body = send(f"{base}/items", "POST", b'{"name": "lamp", "price_cents": 1999}', "application/json")
    assert status == 201
    assert headers["Location"] == f"/items/{json.loads(body)['id']}"
    assert json.loads(send(f"{base}{headers['Location']}", "GET")[2])["name"] == "lamp"
    cases = [
        ("GET", "/items/424242", None, None, 404),
        ("DELETE", "/items", None, None, 405),
        ("POST", "/items", b"{not json", "application/json", 400),
        ("POST", "/items", b"name=lamp", "application/x-www-form-urlencoded", 415),
        ("POST", "/items", b'{"name": ""}', "application/json", 422),
        ("GET", "/items?limit=0", None, None, 422),
        ("POST", "/items", b'{"name": "' + b"x" * 2000 + b'"}', "application/json", 413),
    ]
    for method, path, payload, content_type, expected in cases:
        status, headers, body = send(f"{base}{path}", method, payload, content_type)
        assert status == expected, (method, path, body)
        assert headers["Content-Type"] == "application/problem+json", (method, path)
        problem = json.loads(body)
        assert problem["status"] == expected
        assert problem["request_id"] == headers["X-Request-ID"]
        assert {"type", "title", "detail", "instance"} <= set(problem)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "Server" not in headers, "no version banner"
    stdout, stderr = stop(process)
    assert process.returncode == 0, stderr


def test_every_metric_the_alert_rules_and_the_dashboard_use_is_served(project: Path, start_service) -> None:
    """The chart's PrometheusRule and dashboard read only metrics the running service exposes, by those names."""
    chart = project / "charts" / DEFAULT_SLUG
    values = yaml.safe_load((chart / "ci" / "monitoring-values.yaml").read_text(encoding="utf-8"))
    rendered = helm.Chart.load(chart).render(values, name="demo", namespace="prod", is_install=True)
    rules = yaml.safe_load(rendered[f"{DEFAULT_SLUG}/templates/prometheusrule.yaml"])["spec"]["groups"]
    board = json.loads(yaml.safe_load(rendered[f"{DEFAULT_SLUG}/templates/dashboard-configmap.yaml"])["data"][f"demo-{DEFAULT_SLUG}.json"])
    expressions = " ".join(
        [rule["expr"] for group in rules for rule in group["rules"]]
        + [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    )
    recorded = {rule["record"] for group in rules for rule in group["rules"] if "record" in rule}
    used = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expressions)) - recorded
    assert used == {
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_bucket",
        "http_server_requests_shed_total",
        "http_server_active_requests",
        "health_readiness_changes_total",
        "health_ready",
        "event_loop_lag_seconds",
    }
    process, base = start_service(**{f"{PREFIX}_METRICS_PATH": "/internal/metrics"})
    wait_for_status(process, f"{base}/health/ready")
    assert fetch(f"{base}/items")[0] == 200
    text = fetch(f"{base}/internal/metrics")[1]
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert used <= exposed, used - exposed
    stop(process)
