"""Rendering and process helpers shared by the template's tests."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_SLUG = "my-service"
DEFAULT_PACKAGE = "my_service"
# Opening delimiters catch leftovers; closing ones alone occur in plain code ({"a": {}}).
TEMPLATE_SYNTAX = ("{{", "{%", "{#", "cookiecutter.")
# The Node tools the tests run (package.json pins them) and the machine's CA list, which Node does not read.
TOOLS = TEMPLATE_DIR / "tests" / "tools"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


@dataclass
class Render:
    """The outcome of one ``cookiecutter`` run."""

    returncode: int
    stdout: str
    stderr: str
    output_dir: Path
    seconds: float

    def project(self, slug: str = DEFAULT_SLUG) -> Path:
        return self.output_dir / slug


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without anything that would leak into a nested pytest or service."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "MY_SERVICE_", "VIRTUAL_ENV", "PYCHASSIS_"))
    }
    env.update(overrides)
    return env


def render(
    output_dir: Path,
    answers: dict[str, object] | None = None,
    *,
    skip_lock: bool = True,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    template: Path = TEMPLATE_DIR,
    timeout: float = 900,
) -> Render:
    """Run cookiecutter as a user would, non-interactively, with ``answers`` as extra context."""
    output_dir.mkdir(parents=True, exist_ok=True)
    context = [f"{key}={value}" for key, value in (answers or {}).items()]
    environment = clean_env(**(env or {}))
    if skip_lock:
        environment["PYCHASSIS_SKIP_LOCK"] = "1"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(output_dir), *extra_args,
         str(template), *context],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    return Render(result.returncode, result.stdout, result.stderr, output_dir, time.monotonic() - started)


def node_tool(script: str) -> list[str]:
    """The command that runs ``tests/tools/<script>``; installs the pinned Node packages first if any is missing.

    Test workers take turns here (a lock on package.json): ``npm ci`` replaces node_modules
    as a whole, so it must not run while another worker's tool reads it.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the tests need Node.js and npm (apt-get install nodejs npm) for their Node tools"
    with (TOOLS / "package.json").open(encoding="utf-8") as manifest:
        fcntl.flock(manifest, fcntl.LOCK_EX)  # released when the file closes
        pinned: dict[str, str] = json.load(manifest)["dependencies"]
        if any(_node_package_version(name) != version for name, version in pinned.items()):
            env = dict(os.environ)
            if Path(SYSTEM_CA).exists():  # Node has its own CA list; add the machine's (proxies included)
                env.setdefault("NODE_EXTRA_CA_CERTS", SYSTEM_CA)
            # No package needs an install script; without them none runs (@scarf/scarf's, under the
            # AsyncAPI parser, would send install analytics).
            subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(TOOLS)],
                env=env, check=True, timeout=600,
            )  # fmt: skip
    return [node, str(TOOLS / script)]


def _node_package_version(name: str) -> str | None:
    try:
        installed = json.loads((TOOLS / "node_modules" / name / "package.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return str(installed["version"])


def load_hook(name: str, answers: dict[str, object] | None = None) -> types.ModuleType:
    """``hooks/<name>.py`` rendered as cookiecutter renders it (defaults, or ``answers``), imported without running it."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config
    from cookiecutter.utils import create_env_with_context

    sys.path.insert(0, str(TEMPLATE_DIR))  # cookiecutter imports local_extensions from the template
    try:
        context = generate_context(str(TEMPLATE_DIR / "cookiecutter.json"), extra_context=answers)
        context["cookiecutter"] = prompt_for_config(context, no_input=True)
        hook = (TEMPLATE_DIR / "hooks" / f"{name}.py").read_text(encoding="utf-8")
        source = create_env_with_context(context).from_string(hook).render(**context)
    finally:
        sys.path.remove(str(TEMPLATE_DIR))
    module = types.ModuleType(name)
    exec(compile(source, f"hooks/{name}.py", "exec"), module.__dict__)  # noqa: S102 - our own hook
    return module


def files_of(project: Path) -> list[Path]:
    skipped = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return [path for path in project.rglob("*") if path.is_file() and not skipped & set(path.parts)]


# The project's only binary files (cookiecutter copies them as they are): not read as text.
BINARY_SUFFIXES = (".png",)


def text_files_of(project: Path) -> list[Path]:
    return [path for path in files_of(project) if path.suffix not in BINARY_SUFFIXES]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str, timeout: float = 3) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for_status(process: subprocess.Popen, url: str, status: int = 200, timeout: float = 30) -> float:
    """Poll ``url`` until it answers ``status``; return how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"the service exited early with code {process.returncode}")
        try:
            if get_json(url)[0] == status:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s")


class TcpProxy:
    """Forwards a local port to a server; ``close()`` makes it unreachable, ``open()`` brings it back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            # shutdown first: close() alone leaves a socket that another thread is accepting on listening.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._connections += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def made_up_release(folder: Path, name: str, version: str, code: str) -> Path:
    """A wheel of ``name`` ``version`` whose only module (``name`` as a module) holds ``code``, in ``folder``:
    a release no index has, for a find-links folder (``UV_FIND_LINKS``)."""
    module = name.replace("-", "_")
    source = folder / f".{module}-{version}-source"
    (source / "src" / module).mkdir(parents=True)
    (source / "src" / module / "__init__.py").write_text(code, encoding="utf-8")
    (source / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        '[build-system]\nrequires = ["uv_build>=0.13,<0.14"]\nbuild-backend = "uv_build"\n',
        encoding="utf-8",
    )
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "build", "--wheel", "--quiet", "--out-dir", str(folder), str(source)],
                   check=True, timeout=120)
    shutil.rmtree(source)
    [wheel] = folder.glob(f"{module}-{version}-*.whl")
    return wheel
