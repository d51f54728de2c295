"""The artefact tier, part 1: the generated project's image, built with its own `make docker`, run for real,
alone and as its Helm chart's pod (`podman kube play`).

podman builds and runs it (no Docker engine here). The image runs the newest supported CPython by
default and must run the lowest too, so it is built and run on both. There is no registry either,
so each base image is a Debian root filesystem made by mmdebstrap and imported once: bookworm's
python3 for the lowest (3.11), sid's python3.15 for the newest. podman's storage lives in
~/.cache/pychassis/containers, outside the checkout, so later runs on the same machine (fresh
clones included) reuse it. The Dockerfile must work on them as on the official Python image: its
base is a build argument.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
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


def make_docker(project: Path, base: Base, tag: str, *extra: str) -> str:
    """`make docker` with podman on ``base`` (``extra`` flags to the build); returns what the build printed.
    uv in the build reaches the index through this machine's CA list (a proxy's CA included), as the
    system's certificates."""
    build_args = (f"--format docker --build-arg BASE_IMAGE={base.name} --build-arg PYTHON_VERSION={base.python} "
                  f"--volume {CA_BUNDLE}:{CA_BUNDLE}:ro {' '.join(extra)}").strip()
    build = subprocess.run(["make", "docker", "DOCKER=podman", f"IMAGE={tag}", f"DOCKER_BUILD_ARGS={build_args}"],
                           cwd=project, env=podman_env(), capture_output=True, text=True, timeout=1200, check=False)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    return build.stdout + build.stderr


@pytest.fixture(scope="module", params=sorted(BASES))
def image(request: pytest.FixtureRequest, project: Path) -> Iterator[Base]:
    """The project's image on one Python, built with `make docker DOCKER=podman`."""
    base = BASES[request.param]
    ensure_base_image(base)
    started = time.monotonic()
    make_docker(project, base, base.image)
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
    assert config["WorkingDir"] == "/app"
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


def played_pod(image: Base, project: Path, work: Path, api_port: int, management_port: int) -> tuple[Path, str]:
    """The chart's Deployment and ConfigMap (management port on, one replica, the image local), and its
    Secret as a podman secret: the file to play, the secret's name.

    Two things podman (4.3, Debian's) does otherwise than Kubernetes, bridged here, not in the chart:
    it publishes each containerPort on every interface of the host, so each gets a hostPort on
    127.0.0.1 (a free one); and it stores a played Secret in a form its own envFrom cannot read
    back ("not valid JSON"), so the Secret's data goes in as the podman secret envFrom reads (JSON,
    values base64-encoded). It turns the httpGet probes into healthchecks that run curl, which the
    image has not, through systemd timers, which this machine has not: they never run here, and the
    test runs the image's own HEALTHCHECK instead, as Docker and podman run it.
    """
    repository, tag = image.image.rsplit(":", 1)
    release = f"kube{api_port}"
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "replicaCount": 1,
        "managementPort": 9090,
        # Observable: the probes' requests are logged only with it.
        "secretEnv": {f"{DEFAULT_PACKAGE.upper()}_LOGGING_ACCESS_LOG_PROBES": "true"},
    }
    rendered = helm.Chart.load(project / "charts" / DEFAULT_SLUG).render(values, name=release, namespace="default",
                                                                        is_install=True)
    documents = [document for path, text in rendered.items() if not path.endswith("NOTES.txt")
                 for document in yaml.safe_load_all(text) if document]  # fmt: skip
    by_kind = {document["kind"]: document for document in documents
               if document["metadata"]["name"] == f"{release}-{DEFAULT_SLUG}"}  # fmt: skip
    deployment, settings, secret = by_kind["Deployment"], by_kind["ConfigMap"], by_kind["Secret"]
    for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]:
        port.update(hostIP="127.0.0.1", hostPort={CONTAINER_PORT: api_port, 9090: management_port}[port["containerPort"]])
    played = work / "pod.yaml"
    played.write_text(yaml.safe_dump_all([settings, deployment]), encoding="utf-8")
    data = work / "secret.json"
    data.write_text(json.dumps({key: base64.b64encode(value.encode()).decode() for key, value in secret["stringData"].items()}),
                    encoding="utf-8")
    podman("secret", "create", secret["metadata"]["name"], str(data))
    return played, secret["metadata"]["name"]


def test_the_chart_s_pod_runs_under_kube_play_serves_and_drains(image: Base, project: Path, tmp_path: Path) -> None:
    """As Kubernetes runs it: the chart's pod, non-root, read-only, from the image's /app; the API and the
    management port answer, the image's HEALTHCHECK asks the port the chart's settings name, and SIGTERM
    drains it to exit 0."""
    if image.python != NEWEST:
        pytest.skip("the pod is the same on every base: played once, on the image's default Python")
    started = time.monotonic()
    api_port, management_port = free_port(), free_port()
    api, management = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{management_port}"
    played, secret = played_pod(image, project, tmp_path, api_port, management_port)
    try:
        play = podman("kube", "play", str(played), check=False, timeout=180)
        # It prints "Pod:", the pod's id, "Container:", the container's, even when that did not start.
        ids = dict(re.findall(r"^(Pod|Container):\n(\w+)$", play.stdout, flags=re.M))
        assert play.returncode == 0 and "Error" not in play.stderr and len(ids) == 2, play.stdout + play.stderr
        pod, container = ids["Pod"], ids["Container"]
        wait_until_ready(container, f"{management}/health/ready")
        assert get_json(f"{api}/items")[0] == 200
        assert get_json(f"{api}/health/live")[0] == 404, "the health checks are on the management port alone"
        inspected = json.loads(podman("inspect", container).stdout)[0]
        assert inspected["Config"]["User"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
        assert inspected["HostConfig"]["Memory"] > 0, "the chart's memory limit"
        assert podman("exec", container, "stat", "-c", "%u %a", "/app").stdout.split() == ["0", "755"]
        healthcheck = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image.image).stdout)
        assert healthcheck["Test"][0] == "CMD"
        check = podman("exec", container, *healthcheck["Test"][1:], check=False)
        assert check.returncode == 0, f"the image's HEALTHCHECK failed: {check.stdout}{check.stderr}"
        shown = podman("exec", container, DEFAULT_SLUG, "config", "show").stdout
        assert "# settings file: /etc/service/settings.yml" in shown and "port: 9090  # file" in shown

        stopping = time.monotonic()
        podman("pod", "stop", "--time", "45", pod, timeout=60)
        stopped_in = time.monotonic() - stopping
        assert json.loads(podman("inspect", container).stdout)[0]["State"]["ExitCode"] == 0
        assert stopped_in < 30, "SIGTERM reached the service, which drained and exited (no SIGKILL)"
        records = [json.loads(line) for line in podman("logs", container).stdout.splitlines()]  # all JSON
        events = [record["event"] for record in records]
        assert "service ready" in events and "stop signal received; draining" in events
        assert events[-1] == "server stopped"
        assert any(record.get("path") == "/health/ready" for record in records), "the Secret's setting reached it"
    finally:  # the pod (stopped or not: SIGKILL after 10 s) and its infra container, then the secret
        podman("kube", "down", str(played), check=False, timeout=60)
        podman("secret", "rm", secret, check=False)
    print(f"\n[figures] the chart's pod under podman kube play: played, served and drained (SIGTERM to exit 0 in "
          f"{stopped_in:.1f} s) in {time.monotonic() - started:.0f} s")


# Run in the image as its user: what its virtualenv holds and what else the build left.
INSPECT_IMAGE = """
import importlib.metadata, json, os, shutil, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
package = os.path.join(site, sys.argv[1])
print(json.dumps({
    "prefix": sys.prefix,
    "distributions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
    "package_files": sorted(os.listdir(package)),
    "compiled": sorted(os.listdir(os.path.join(package, "__pycache__"))),
    "editable": [d.metadata["Name"] for d in importlib.metadata.distributions()
                 if json.loads(d.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable")],
    "venv_bin": sorted(os.listdir(os.path.join(sys.prefix, "bin"))),
    "uv": shutil.which("uv"),
    "left_over": [path for path in ("/opt/uv", "/build", "/root/.cache") if os.path.lexists(path)],
}))
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_holds_the_locked_runtime_and_nothing_of_the_build(image: Base, project: Path) -> None:
    """/opt/venv is uv.lock's runtime dependencies at their locked versions and the project as a wheel,
    compiled; no dev or test group, no uv, pip or cache, nothing of the builder stage."""
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    entries: dict[str, list[dict]] = {}  # a package may be locked at two versions, each for some Pythons
    for package in lock["package"]:
        entries.setdefault(normalized(package["name"]), []).append(package)
    (root,) = entries[DEFAULT_SLUG]
    runtime, queue = set(), [dependency["name"] for dependency in root["dependencies"]]
    while queue:  # every package the runtime dependencies can pull in (markers aside)
        name = normalized(queue.pop())
        if name not in runtime:
            runtime.add(name)
            queue += [dependency["name"] for entry in entries[name] for dependency in entry.get("dependencies", [])]
    groups = {normalized(dependency["name"]) for group in root["dev-dependencies"].values() for dependency in group}
    assert {"pytest", "ruff", "mypy", "uv"} <= groups - runtime

    found = json.loads(podman("run", "--rm", "--entrypoint", "python3", image.image, "-c", INSPECT_IMAGE,
                              DEFAULT_PACKAGE).stdout)
    assert found["prefix"] == "/opt/venv"
    installed = {normalized(name): version for name, version in found["distributions"].items()}
    assert installed.pop(DEFAULT_SLUG) == root["version"]
    assert {"quart", "hypercorn", "pydantic"} <= set(installed) <= runtime, set(installed) - runtime
    for name, version in installed.items():
        locked = {entry["version"] for entry in entries[name]}
        assert version in locked, f"{name} {version}: uv.lock has {locked}"
    assert not (groups - runtime) & set(installed), "no dev or test dependency"
    assert "__init__.py" in found["package_files"] and found["editable"] == [], "the project is installed, not linked"
    assert any(name.startswith("__init__.") and name.endswith(".pyc") for name in found["compiled"]), "compiled"
    assert not [name for name in found["venv_bin"] if name.startswith(("pip", "uv"))], found["venv_bin"]
    assert found["uv"] is None
    assert found["left_over"] == []


def test_a_change_to_the_code_alone_reuses_the_dependencies_layer(image: Base, project: Path) -> None:
    """After the image's build, the builder stage again with a changed module: the dependencies' `uv sync`
    (only pyproject.toml and uv.lock copied before it) comes from the layer cache, the project's runs again."""
    if image.python != LOWEST:
        pytest.skip("the builder's layers are the same on every base: checked once, on the lowest Python")
    module = project / "src" / DEFAULT_PACKAGE / "__init__.py"
    original = module.read_text(encoding="utf-8")
    tag = f"{image.image}-builder"
    started = time.monotonic()
    try:
        module.write_text(original + "# A change to the code alone.\n", encoding="utf-8")
        output = make_docker(project, image, tag, "--target builder")
    finally:
        module.write_text(original, encoding="utf-8")
        podman("rmi", "--force", tag, check=False)
    print(f"\n[figures] the builder stage again after a change to src/ alone: {time.monotonic() - started:.0f} s")
    steps = re.split(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: ", output, flags=re.M)[1:]
    syncs = [step for step in steps if step.startswith("RUN") and "uv sync" in step.splitlines()[0]]
    assert len(syncs) == 2, output
    dependencies, code = syncs
    assert "--no-install-project" in dependencies.splitlines()[0]
    assert "Using cache" in dependencies, dependencies
    assert "Using cache" not in code, code
    assert f"+ {DEFAULT_SLUG}==0.1.0" in code


def test_dockerfile_installs_the_dependencies_before_the_code(project: Path) -> None:
    """As written: the builder copies only the lock and pyproject.toml before the dependencies' sync, and the
    image takes nothing from it but /opt/venv."""
    text = re.sub(r"\\\n\s*", " ", (project / "Dockerfile").read_text(encoding="utf-8"))
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    starts = [index for index, line in enumerate(instructions) if line.startswith("FROM ")]
    assert len(starts) == 2 and instructions[starts[0]].endswith(" AS builder")
    builder, final = instructions[starts[0]:starts[1]], instructions[starts[1]:]
    syncs = [index for index, line in enumerate(builder) if line.startswith("RUN") and "uv sync --locked" in line]
    assert len(syncs) == 2
    dependencies, code = (builder[index] for index in syncs)
    assert dependencies.endswith("uv sync --locked --no-dev --no-editable --no-install-project")
    assert code.endswith("uv sync --locked --no-dev --no-editable")
    copied_first = {source for line in builder[:syncs[0]] if line.startswith("COPY ") for source in line.split()[1:-1]}
    assert copied_first == {"uv.lock", "pyproject.toml"}
    environment = " ".join(line for line in builder if line.startswith("ENV "))
    for setting in ("UV_PROJECT_ENVIRONMENT=/opt/venv", "UV_PYTHON_DOWNLOADS=never", "UV_LINK_MODE=copy",
                    "UV_COMPILE_BYTECODE=1"):
        assert setting in environment, setting
    assert [line for line in final if line.startswith(("COPY", "ADD", "RUN"))] == [
        "COPY --from=builder /opt/venv /opt/venv",
        "RUN mkdir -p /app",  # the working directory, which buildah's WORKDIR does not make
    ]


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
