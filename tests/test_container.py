"""The artefact tier, part 1: the generated project's image, built with its own `make docker`, run for real.

podman builds and runs it (no Docker engine here). The image runs the newest supported CPython by
default and must run the lowest too, so it is built and run on both. There is no registry either,
so each base image is a Debian root filesystem made by mmdebstrap and imported once: bookworm's
python3 for the lowest (3.11), sid's python3.15 for the newest. podman's storage lives in
~/.cache/pychassis/containers, outside the checkout, so later runs on the same machine (fresh
clones included) reuse it. The Dockerfile must work on them as on the official Python image: its
base is a build argument.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import DEFAULT_PACKAGE, DEFAULT_SLUG, clean_env, free_port, get_json, render
from interpreters import LOWEST, NEWEST

pytestmark = pytest.mark.slow

WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pychassis" / "containers"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclasses.dataclass(frozen=True)
class Base:
    """A local base image with one CPython as ``python3``, made from a Debian suite."""

    python: str
    suite: str
    packages: str
    # A suite whose python3 is another version gets this interpreter linked as python3.
    link_python3: bool

    @property
    def name(self) -> str:
        return f"localhost/pychassis-base:{self.suite}-python{self.python}"

    @property
    def image(self) -> str:
        return f"localhost/{DEFAULT_SLUG}:0.1.0-python{self.python}"


BASES = {
    LOWEST: Base(LOWEST, "bookworm", "python3,python3-venv,ca-certificates", link_python3=False),
    NEWEST: Base(NEWEST, "sid", f"python{NEWEST},python{NEWEST}-venv,ca-certificates", link_python3=True),
}
CONTAINER_PORT = 8000
NON_ROOT_UID = "10001"


def podman_env() -> dict[str, str]:
    """podman configured for this sandbox, with none of the host's pip settings."""
    WORK.mkdir(parents=True, exist_ok=True)
    conf = WORK / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n',
        encoding="utf-8",
    )
    storage = WORK / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{WORK / "storage"}"\nrunroot = "{WORK / "run"}"\n',
        encoding="utf-8",
    )
    env = {name: value for name, value in clean_env().items() if not name.startswith("PIP_")}
    return {**env, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def ensure_base_image(base: Base) -> None:
    """Make the Debian base image once per machine (15 to 40 s), then reuse it."""
    if podman("image", "exists", base.name, check=False).returncode == 0:
        return
    rootfs = WORK / f"{base.suite}-python{base.python}.tar"
    if not rootfs.is_file():
        partial = rootfs.with_suffix(".partial")
        hooks = [f'--customize-hook=ln -s python{base.python} "$1/usr/bin/python3"'] if base.link_python3 else []
        subprocess.run(["mmdebstrap", "--variant=minbase", "--format=tar", f"--include={base.packages}",
                        "--aptopt=Acquire::Check-Valid-Until \"false\"", *hooks, base.suite, str(partial),
                        DEBIAN_MIRROR], check=True, capture_output=True, timeout=900)
        partial.rename(rootfs)
    podman("import", "--change", 'CMD ["python3"]', str(rootfs), base.name)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default project, locked."""
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed for the artefact tier: sudo apt-get install podman runc mmdebstrap")
    result = render(tmp_path_factory.mktemp("image"), skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stderr
    return result.project()


@pytest.fixture(scope="module", params=sorted(BASES))
def image(request: pytest.FixtureRequest, project: Path) -> Iterator[Base]:
    """The project's image on one Python, built with `make docker DOCKER=podman`."""
    base = BASES[request.param]
    ensure_base_image(base)
    build_args = (f"--format docker --build-arg BASE_IMAGE={base.name} --build-arg PYTHON_VERSION={base.python} "
                  f"--volume {CA_BUNDLE}:{CA_BUNDLE}:ro")
    started = time.monotonic()
    build = subprocess.run(["make", "docker", "DOCKER=podman", f"IMAGE={base.image}", f"DOCKER_BUILD_ARGS={build_args}"],
                           cwd=project, env=podman_env(), capture_output=True, text=True, timeout=1200, check=False)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    print(f"\n[figures] make docker DOCKER=podman on Python {base.python}: {time.monotonic() - started:.0f} s")
    yield base
    podman("rmi", "--force", base.image, check=False)
    podman("image", "prune", "--force", check=False)  # the builder stage


@pytest.fixture
def container(image: Base) -> Iterator[tuple[str, str]]:
    """The image running read-only, /tmp in memory, the port published on loopback."""
    port = free_port()
    name = f"pychassis-test-{port}"
    podman("run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp",
           "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}", image.image)
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        podman("rm", "--force", name, check=False)


def wait_until_ready(name: str, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get_json(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} was not ready in {timeout} s; logs:\n{podman('logs', name, check=False).stdout}")


def test_image_metadata(image: Base) -> None:
    config = json.loads(podman("image", "inspect", image.image).stdout)[0]["Config"]
    assert config["User"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    assert config["Entrypoint"] == [DEFAULT_SLUG]
    healthcheck = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image.image).stdout)
    assert healthcheck["Test"] == ["CMD", "python3", "-m", f"{DEFAULT_PACKAGE}.healthcheck"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == DEFAULT_SLUG
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"} <= set(config["Env"])
    sizes = {ref: int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout) for ref in (image.image, image.name)}
    total, base = sizes[image.image], sizes[image.name]
    print(f"\n[figures] image on Python {image.python}: {total / 1e6:.0f} MB, of which {(total - base) / 1e6:.0f} MB "
          f"on top of the base ({base / 1e6:.0f} MB)")


def test_runs_read_only_as_non_root_answers_probes_and_stops_cleanly(image: Base, container: tuple[str, str]) -> None:
    name, base = container
    wait_until_ready(name, f"{base}/health/ready")
    assert get_json(f"{base}/items")[0] == 200
    assert get_json(f"{base}/info")[1]["python"].rsplit(".", 1)[0] == image.python
    assert podman("exec", name, "id", "-u").stdout.strip() == NON_ROOT_UID
    assert podman("exec", name, "touch", "/opt/venv/x", check=False).returncode != 0, "the root filesystem is read-only"
    assert podman("healthcheck", "run", name, check=False).returncode == 0

    started = time.monotonic()
    podman("stop", "--time", "40", name)
    stopped_in = time.monotonic() - started
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0
    assert stopped_in < 30, "SIGTERM reached the service, which drained and exited (no SIGKILL)"
    print(f"\n[figures] Python {image.python}: podman stop (SIGTERM, 3 s drain delay) took {stopped_in:.1f} s")
    logs = podman("logs", name).stdout.splitlines()
    records = [json.loads(line) for line in logs]  # every line on stdout is JSON
    events = [record["event"] for record in records]
    assert "service ready" in events
    assert "stop signal received; draining" in events
    assert events[-1] == "server stopped"


def test_hadolint_finds_nothing(project: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "Dockerfile"], cwd=project, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_docker_compose_file_is_valid(project: Path) -> None:
    compose = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose) == {"services"}
    service = compose["services"][DEFAULT_SLUG]
    assert service["build"] == "."
    assert service["image"] == f"{DEFAULT_SLUG}:0.1.0"
    assert service["ports"] == [f"{CONTAINER_PORT}:{CONTAINER_PORT}"]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert service["healthcheck"]["test"][:4] == ["CMD", "python3", "-m", f"{DEFAULT_PACKAGE}.healthcheck"]
    assert all(isinstance(value, str) for value in service["environment"].values())
    # The environment is valid configuration for the service.
    check = subprocess.run([sys.executable, "-m", DEFAULT_PACKAGE, "config", "check"], cwd=project,
                           env=clean_env(PYTHONPATH=str(project / "src"), **service["environment"]),
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert os.path.exists(project / ".dockerignore")
