"""The artefact tier, part 1: the generated project's image, built with its own `make docker`, run for real.

podman builds and runs it (no Docker engine here). There is no registry either, so
the base image is a Debian bookworm root filesystem with python3, venv and pip made
by mmdebstrap and imported once. podman's storage lives in ~/.cache/pychassis/containers,
outside the checkout, so later runs on the same machine (fresh clones included) reuse it. The Dockerfile must work on it as on the
official Python image: its base is a build argument.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.slow

WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pychassis" / "containers"
BASE_IMAGE = "localhost/pychassis-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE = f"localhost/{DEFAULT_SLUG}:0.1.0"
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


def ensure_base_image() -> None:
    """Make the Debian base image once per machine (about 40 s), then reuse it."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    rootfs = WORK / "bookworm.tar"
    if not rootfs.is_file():
        partial = rootfs.with_suffix(".partial")
        subprocess.run(["mmdebstrap", "--variant=minbase", "--format=tar", f"--include={BASE_PACKAGES}", "bookworm",
                        str(partial), DEBIAN_MIRROR], check=True, capture_output=True, timeout=900)
        partial.rename(rootfs)
    podman("import", "--change", 'CMD ["python3"]', str(rootfs), BASE_IMAGE)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default project's image, built with `make docker DOCKER=podman`; yields the project."""
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed for the artefact tier: sudo apt-get install podman runc mmdebstrap")
    result = render(tmp_path_factory.mktemp("image"), skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stderr
    project = result.project()
    ensure_base_image()
    build_args = (f"--format docker --build-arg BASE_IMAGE={BASE_IMAGE} "
                  f"--volume {CA_BUNDLE}:{CA_BUNDLE}:ro")
    started = time.monotonic()
    build = subprocess.run(["make", "docker", "DOCKER=podman", f"DOCKER_BUILD_ARGS={build_args}"],
                           cwd=project, env=podman_env(), capture_output=True, text=True, timeout=1200, check=False)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    print(f"\n[figures] make docker DOCKER=podman: {time.monotonic() - started:.0f} s")
    yield project
    podman("rmi", "--force", IMAGE, check=False)
    podman("image", "prune", "--force", check=False)  # the builder stage


@pytest.fixture
def container(image: Path) -> Iterator[tuple[str, str]]:
    """The image running read-only, /tmp in memory, the port published on loopback."""
    port = free_port()
    name = f"pychassis-test-{port}"
    podman("run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp",
           "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}", IMAGE)
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


def test_image_metadata(image: Path) -> None:
    config = json.loads(podman("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["User"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    assert config["Entrypoint"] == [DEFAULT_SLUG]
    healthcheck = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE).stdout)
    assert healthcheck["Test"] == ["CMD", "python3", "-m", f"{DEFAULT_PACKAGE}.healthcheck"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == DEFAULT_SLUG
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"} <= set(config["Env"])
    sizes = {ref: int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout) for ref in (IMAGE, BASE_IMAGE)}
    print(f"\n[figures] image {sizes[IMAGE] / 1e6:.0f} MB, of which {(sizes[IMAGE] - sizes[BASE_IMAGE]) / 1e6:.0f} MB "
          f"on top of the base ({sizes[BASE_IMAGE] / 1e6:.0f} MB)")


def test_runs_read_only_as_non_root_answers_probes_and_stops_cleanly(container: tuple[str, str]) -> None:
    name, base = container
    wait_until_ready(name, f"{base}/health/ready")
    assert get_json(f"{base}/items")[0] == 200
    assert podman("exec", name, "id", "-u").stdout.strip() == NON_ROOT_UID
    assert podman("exec", name, "touch", "/opt/venv/x", check=False).returncode != 0, "the root filesystem is read-only"
    assert podman("healthcheck", "run", name, check=False).returncode == 0

    started = time.monotonic()
    podman("stop", "--time", "40", name)
    stopped_in = time.monotonic() - started
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0
    assert stopped_in < 30, "SIGTERM reached the service, which drained and exited (no SIGKILL)"
    print(f"\n[figures] podman stop (SIGTERM, 3 s drain delay) took {stopped_in:.1f} s")
    logs = podman("logs", name).stdout.splitlines()
    records = [json.loads(line) for line in logs]  # every line on stdout is JSON
    events = [record["event"] for record in records]
    assert "service ready" in events
    assert "stop signal received; draining" in events
    assert events[-1] == "server stopped"


def test_hadolint_finds_nothing(image: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "Dockerfile"], cwd=image, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_docker_compose_file_is_valid(image: Path) -> None:
    compose = yaml.safe_load((image / "docker-compose.yml").read_text(encoding="utf-8"))
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
    check = subprocess.run([sys.executable, "-m", DEFAULT_PACKAGE, "config", "check"], cwd=image,
                           env=clean_env(PYTHONPATH=str(image / "src"), **service["environment"]),
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert os.path.exists(image / ".dockerignore")
