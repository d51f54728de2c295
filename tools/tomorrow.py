"""The tomorrow tier: would the template still generate working services with today's newest versions?

    python tools/tomorrow.py                               every variant, every pin at its newest allowed version
    python tools/tomorrow.py --variant default             one variant (repeat for more; --list-variants names them)
    python tools/tomorrow.py --upgrade-package sentry-sdk  move only these pins (repeat for more)
    python tools/tomorrow.py --find-links DIR              also take packages from DIR (a made-up release, say)
    python tools/tomorrow.py --write-pins                  when green, move tested-pins.txt to the new versions
    python tools/tomorrow.py --summary FILE                also append the result as Markdown to FILE

It resolves candidate pins (``tools/pins.py --upgrade``) and prints what moved. Each variant is then
rendered from a copy of the template whose ``tested-pins.txt`` is the candidate, and the
post-generation hook locks, installs and runs the generated tests as it does for a user. When a
variant fails, each moved package is tried alone: the tested pins with only that package (and what
it strictly needs) moved, the variant locked and installed with them, and the tests that failed run
again. A package whose move alone fails them is a breaker, named ``<name> <version>``.

Not part of the template's CI (``.ci/run``): its result depends on what the index holds that day.
``.github/workflows/tomorrow.yml`` runs it weekly and opens a pull request that moves the pins when
it is green. The backing services' tests run against the servers given by ``--postgresql-url``,
``--redis-url``, ``--rabbitmq-url`` and ``--nats-url`` (the machine's own on 127.0.0.1 by default),
which must answer. Exit status: 0 green (or nothing moved), 1 a variant failed, 2 the tier could not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
PROJECT_TEMPLATE = "{{cookiecutter.project_slug}}"
PINS = TEMPLATE / PROJECT_TEMPLATE / "tested-pins.txt"
PINS_TOOL = TEMPLATE / "tools" / "pins.py"
WORK = TEMPLATE / "build" / "tomorrow"
# What the variants are generated as (cookiecutter's defaults): the test servers' variables follow the package.
SLUG = "my-service"
PACKAGE = "my_service"
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "postgresql-redis-rabbitmq-oidc": {"database": "postgresql", "cache": "redis", "broker": "rabbitmq", "auth": "oidc"},
    "postgresql-redis-nats-oidc": {"database": "postgresql", "cache": "redis", "broker": "nats", "auth": "oidc"},
    "redis-nats": {"cache": "redis", "broker": "nats"},
}
# A backing service: the answer that chooses it, the variable the hook reads its test server from, its default URL.
SERVERS = {
    "postgresql": (("database", "postgresql"), f"{PACKAGE.upper()}_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"),
    "redis": (("cache", "redis"), f"{PACKAGE.upper()}_TEST_CACHE_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": (("broker", "rabbitmq"), f"{PACKAGE.upper()}_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": (("broker", "nats"), f"{PACKAGE.upper()}_TEST_BROKER_URL", "nats://127.0.0.1:4222"),
}
DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379, "amqp": 5672, "nats": 4222}
EXCLUDE_NEWER = "# exclude-newer: "
# A pin: "quart==0.22.0 ; python_full_version < '3.13'" -> quart, 0.22.0.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
# What the hook prints: the project it made (and how it went), or where the failed verification's log is.
CREATED = re.compile(r"^\[pychassis\] created (.+?) \((.*)\)$", re.MULTILINE)
HOOK_ERROR = re.compile(r"^\[pychassis\] error: (.*)$", re.MULTILINE)
FULL_LOG = re.compile(r"^\[pychassis\] full log: (.+)$", re.MULTILINE)
SKIPPED_FOR_SERVER = re.compile(r"\d+ need \w+")
# pytest's short summary: "FAILED tests/test_a.py::test_b - AssertionError" or "ERROR tests/test_a.py".
SHORT_SUMMARY = "short test summary info"
FAILED_TEST = re.compile(r"^(?:FAILED|ERROR) ([^\s\[]+(?:\[[^\]]*\])?)")
RENDER_TIMEOUT = 2400  # the hook's own steps have their time-outs; this only stops a hung cookiecutter
PINS_TIMEOUT = 900
SYNC_TIMEOUT = 900
TEST_TIMEOUT = 900
SHOWN_TESTS = 5


class TierError(Exception):
    """The tier could not run (not: a variant failed); the message says why."""


def say(message: str) -> None:
    print(f"[tomorrow] {message}", flush=True)


# --- Pins -------------------------------------------------------------------------------------------


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Pins:
    """A tested-pins.txt: each package's requirement lines (one per Python range where it is split)."""

    text: str

    @property
    def exclude_newer(self) -> str | None:
        return next(
            (line.removeprefix(EXCLUDE_NEWER).strip() for line in self.text.splitlines() if line.startswith(EXCLUDE_NEWER)),
            None,
        )

    @property
    def packages(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Package -> (its requirement lines, its versions), both sorted."""
        lines: dict[str, set[str]] = {}
        versions: dict[str, set[str]] = {}
        for line in self.text.splitlines():
            match = PIN.match(line.strip())
            if match:
                name = canonical(match.group(1))
                lines.setdefault(name, set()).add(line.strip())
                versions.setdefault(name, set()).add(match.group(2))
        return {name: (tuple(sorted(lines[name])), tuple(sorted(versions[name], key=version_key))) for name in lines}

    def version_of(self, name: str) -> str | None:
        versions = self.packages.get(canonical(name), ((), ()))[1]
        return versions[0] if len(versions) == 1 else None


def version_key(version: str) -> tuple:
    """Orders versions well enough to show them (1.10 after 1.9); never used to decide anything."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+-]", version))


@dataclasses.dataclass(frozen=True)
class Change:
    """One package whose pins differ: ``old`` is empty for a new package, ``new`` for one that went away."""

    name: str
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def label(self) -> str:
        """How a breaker is named: ``sentry-sdk 9.0.0``."""
        return f"{self.name} {', '.join(self.new) or '(removed)'}"

    @property
    def movable(self) -> bool:
        """Whether it can be moved alone: it was pinned and still is (new ones come with what needs them)."""
        return bool(self.old and self.new)

    def __str__(self) -> str:
        return f"{self.name} {', '.join(self.old) or '(new)'} -> {', '.join(self.new) or '(removed)'}"


def changes(old: Pins, new: Pins) -> list[Change]:
    """What moved from ``old`` to ``new``, by package name."""
    before, after = old.packages, new.packages
    found = []
    for name in sorted(before.keys() | after.keys()):
        lines_before, versions_before = before.get(name, ((), ()))
        lines_after, versions_after = after.get(name, ((), ()))
        if lines_before != lines_after:
            found.append(Change(name, versions_before, versions_after))
    return found


def resolve_pins(
    output: Path,
    *,
    upgrade: bool,
    packages: Iterable[str] = (),
    find_links: Iterable[str] = (),
    exclude_newer: str | None = None,
) -> Pins:
    """tools/pins.py into ``output``, from the tested pins; its chatter is kept unless it fails."""
    command = [sys.executable, str(PINS_TOOL), "--output", str(output)]
    if upgrade:
        command.append("--upgrade")
    for package in packages:
        command += ["--upgrade-package", package]
    for location in find_links:
        command += ["--find-links", location]
    if exclude_newer:
        command += ["--exclude-newer", exclude_newer]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=clean_env(), timeout=PINS_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise TierError(f"tools/pins.py did not finish within {PINS_TIMEOUT} s") from None
    if result.returncode != 0:
        raise TierError(f"tools/pins.py failed:\n{(result.stdout + result.stderr).strip()[-4000:]}")
    return Pins(output.read_text(encoding="utf-8"))


# --- Rendering and testing ----------------------------------------------------------------------------


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without what would leak into the hook or a generated suite."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", f"{PACKAGE.upper()}_", "VIRTUAL_ENV", "PYCHASSIS_"))
    }
    env.update(overrides)
    return env


def copy_template(into: Path) -> Path:
    """The template's tracked files (as they are in the work tree), so its pins can be replaced in the copy."""
    if into.exists():
        shutil.rmtree(into)
    listed = subprocess.run(
        ["git", "-C", str(TEMPLATE), "ls-files", "-z"], capture_output=True, text=True, timeout=60, check=False
    )
    if listed.returncode == 0 and listed.stdout:
        for name in filter(None, listed.stdout.split("\0")):
            source = TEMPLATE / name
            if source.is_file():  # a tracked file deleted in the work tree is left out, as it would be committed
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into / name, follow_symlinks=False)
    else:  # not a git checkout (an unpacked archive): everything but what is never part of the template
        shutil.copytree(TEMPLATE, into, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "__pycache__", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"
        ))  # fmt: skip
    return into


def server_env(answers: dict[str, str], urls: dict[str, str]) -> dict[str, str]:
    """The hook's test-server variables for the services ``answers`` chose."""
    return {
        variable: urls[server]
        for server, ((question, choice), variable, _) in SERVERS.items()
        if answers.get(question) == choice
    }


def servers_of(answers: dict[str, str]) -> list[str]:
    return [server for server, ((question, choice), _, _) in SERVERS.items() if answers.get(question) == choice]


def answers_server(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.split("+")[0])
        with socket.create_connection((parts.hostname or "localhost", port or 0), timeout=3):
            return True
    except (OSError, ValueError):
        return False


@dataclasses.dataclass
class Render:
    returncode: int
    output: str
    project: Path
    seconds: float


def render(
    template: Path,
    pins: Pins,
    answers: dict[str, str],
    output_dir: Path,
    *,
    verify: bool,
    env: dict[str, str],
) -> Render:
    """cookiecutter as a user runs it, from ``template`` with ``pins`` as its tested pins (the project kept on failure)."""
    (template / PROJECT_TEMPLATE / "tested-pins.txt").write_text(pins.text, encoding="utf-8")
    output_dir.mkdir(parents=True, exist_ok=True)
    context = [f"{key}={value}" for key, value in {**answers, "verify": str(verify).lower()}.items()]
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cookiecutter", "--no-input", "--keep-project-on-failure",
             "--output-dir", str(output_dir), str(template), *context],
            capture_output=True, text=True, env=env, timeout=RENDER_TIMEOUT, check=False,
        )  # fmt: skip
        returncode, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, output = -1, f"cookiecutter did not finish within {RENDER_TIMEOUT} s\n{expired.stdout or ''}"
    return Render(returncode, output, output_dir / SLUG, time.monotonic() - started)


def failing_tests(pytest_output: str) -> list[str]:
    """The ids pytest's short summary names as FAILED or ERROR (a module, for an error collecting it)."""
    text = pytest_output
    if SHORT_SUMMARY in text:
        text = text[text.rindex(SHORT_SUMMARY) :]
    found: list[str] = []
    for line in text.splitlines():
        match = FAILED_TEST.match(line)
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def uv_for(pins: Pins) -> str:
    """The uv the pins name, where the hook finds or installs it; else the one beside this Python."""
    version = pins.version_of("uv")
    on_path = shutil.which("uv")
    if on_path and version:
        result = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=False)
        if result.stdout.split()[1:2] == [version]:
            return on_path
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cached = base / "pychassis" / f"uv-{version}" / "bin" / "uv"
    if version and cached.exists():
        return str(cached)
    return str(Path(sys.executable).with_name("uv"))


@dataclasses.dataclass
class Check:
    """One variant locked with some pins: whether its failing tests (or its locking or install) fail."""

    failed: bool
    detail: str
    inconclusive: bool = False


def check(template: Path, pins: Pins, answers: dict[str, str], folder: Path, tests: list[str], env: dict[str, str]) -> Check:
    """Lock ``answers``' project with ``pins`` (the hook, not verifying), install it and run ``tests`` (all when empty)."""
    if folder.exists():
        shutil.rmtree(folder)
    made = render(template, pins, answers, folder, verify=False, env=env)
    if made.returncode != 0:
        errors = HOOK_ERROR.findall(made.output)
        return Check(True, f"generating failed: {errors[0] if errors else made.output.strip()[-300:]}")
    project = made.project
    try:
        sync = subprocess.run(
            [uv_for(pins), "sync", "--locked", "--quiet", "--python", sys.executable],
            cwd=project, capture_output=True, text=True, env=env, timeout=SYNC_TIMEOUT, check=False,
        )  # fmt: skip
        if sync.returncode != 0:
            return Check(True, f"installing uv.lock failed: {(sync.stdout + sync.stderr).strip()[-300:]}")
        result = subprocess.run(
            [str(project / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=project, capture_output=True, text=True, env=env, timeout=TEST_TIMEOUT, check=False,
        )  # fmt: skip
        (folder / "tests.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    except subprocess.TimeoutExpired as expired:
        return Check(True, f"{expired.cmd[0]} did not finish within {expired.timeout:.0f} s")
    finally:
        shutil.rmtree(project / ".venv", ignore_errors=True)  # the projects stay for inspection, not their .venv
    if result.returncode == 0:
        return Check(False, "the tests pass")
    if result.returncode == 5:  # no tests collected: the ids did not name tests of this project
        return Check(False, "the failing tests were not found", inconclusive=True)
    failed = failing_tests(result.stdout)
    return Check(True, f"{len(failed)} failed: {shown(failed)}" if failed else f"pytest exited {result.returncode}")


def shown(tests: list[str]) -> str:
    listed = ", ".join(f"`{test}`" for test in tests[:SHOWN_TESTS])
    return listed + (f" and {len(tests) - SHOWN_TESTS} more" if len(tests) > SHOWN_TESTS else "")


# --- The tier ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Breaker:
    change: Change
    along: list[Change]  # what moved with it (what its new version needs)
    detail: str


@dataclasses.dataclass
class VariantResult:
    name: str
    answers: dict[str, str]
    passed: bool
    seconds: float
    reason: str = ""
    failing: list[str] = dataclasses.field(default_factory=list)
    breakers: list[Breaker] = dataclasses.field(default_factory=list)
    harmless: list[Change] = dataclasses.field(default_factory=list)  # moved alone, the failing tests pass
    notes: list[str] = dataclasses.field(default_factory=list)
    bisect_seconds: float = 0.0


def run_variant(name: str, template: Path, candidate: Pins, work: Path, env: dict[str, str]) -> VariantResult:
    answers = VARIANTS[name]
    say(f"{name}: generating with the candidate pins, the hook verifying ...")
    made = render(template, candidate, answers, work / name / "candidate", verify=True, env=env)
    created = CREATED.findall(made.output)
    if made.returncode == 0 and created:
        outcome = created[-1][1]
        skipped = SKIPPED_FOR_SERVER.findall(outcome)
        if skipped:  # a test server did not answer the hook: the variant was not fully tested
            return VariantResult(name, answers, False, made.seconds, reason=f"tests skipped: {', '.join(skipped)}")
        say(f"{name}: passed in {made.seconds:.0f} s ({outcome})")
        return VariantResult(name, answers, True, made.seconds, reason=outcome)
    (work / name).mkdir(parents=True, exist_ok=True)
    errors = HOOK_ERROR.findall(made.output)
    reason = errors[0].rstrip(" :") if errors else made.output.strip()[-500:]
    failing: list[str] = []
    logs = FULL_LOG.findall(made.output)
    if logs and Path(logs[-1]).exists():  # the hook's log of the install and the tests, kept with the project
        kept = work / name / "verify.log"
        shutil.move(logs[-1], kept)
        failing = failing_tests(kept.read_text(encoding="utf-8", errors="replace"))
    if not failing:  # the hook also quotes pytest's summary lines
        failing = failing_tests(re.sub(r"^\[pychassis\]\s+", "", made.output, flags=re.MULTILINE))
    (work / name / "cookiecutter.log").write_text(made.output, encoding="utf-8")
    say(f"{name}: FAILED in {made.seconds:.0f} s: {reason}" + (f" ({len(failing)} tests)" if failing else ""))
    return VariantResult(name, answers, False, made.seconds, reason=reason, failing=failing)


def bisect(
    result: VariantResult,
    template: Path,
    tested: Pins,
    moved: list[Change],
    singles: dict[str, Pins],
    single_pins: Callable[[str], Pins],
    work: Path,
    env: dict[str, str],
) -> None:
    """Each moved package alone: a breaker when the variant's failing tests fail with only it moved."""
    started = time.monotonic()
    what = f"{len(result.failing)} failing tests" if result.failing else "all its tests (none ran to fail)"
    for change in moved:
        if change.name not in singles:
            singles[change.name] = single_pins(change.name)
        pins = singles[change.name]
        moved_alone = changes(tested, pins)
        along = [other for other in moved_alone if other.name != change.name]
        if change.name not in {other.name for other in moved_alone}:
            result.notes.append(f"{change.label} cannot move alone (what it needs holds it back)")
            continue
        say(f"{result.name}: {change} alone, running {what} ...")
        outcome = check(template, pins, result.answers, work / result.name / "alone" / change.name, result.failing, env)
        say(f"{result.name}: {change.label} alone: {outcome.detail}")
        if outcome.failed:
            result.breakers.append(Breaker(change, along, outcome.detail))
        elif outcome.inconclusive:
            result.notes.append(f"{change.label} alone: {outcome.detail}")
        else:
            result.harmless.append(change)
    if not result.breakers and moved:
        say(f"{result.name}: no package breaks it alone; the failing tests with the tested pins ...")
        control = check(template, tested, result.answers, work / result.name / "tested-pins", result.failing, env)
        result.notes.append(
            "they fail with the tested pins too: not the new versions (a flaky test, or this machine)"
            if control.failed
            else "no package breaks it alone, and the tested pins pass: the new versions break it together"
        )
    result.bisect_seconds = time.monotonic() - started


def summary(exclude_newer: str | None, moved: list[Change], results: list[VariantResult], *, wrote: Path | None) -> str:
    """The result as Markdown: the variants, what moved, the breakers."""
    green = all(result.passed for result in results)
    verdict = "green: the newest allowed versions pass" if green else "red: a variant fails with the newest versions"
    lines = [f"## Tomorrow tier: {verdict}", ""]
    lines.append(f"Candidate pins: the newest allowed versions of files uploaded before {exclude_newer}.")
    lines += ["", "| variant | answers | result | time | failing tests |", "|---|---|---|---|---|"]
    for result in results:
        answers = " ".join(f"{key}={value}" for key, value in result.answers.items()) or "(defaults)"
        outcome = "passed" if result.passed else "**failed**"
        failing = f"{len(result.failing)}: {shown(result.failing)}" if result.failing else "" if result.passed else result.reason
        lines.append(f"| {result.name} | {answers} | {outcome} | {result.seconds:.0f} s | {failing.replace('|', '/')} |")
    lines += ["", f"### Changed packages ({len(moved)})", "", "| package | tested | newest |", "|---|---|---|"]
    lines += [f"| {change.name} | {', '.join(change.old) or '(new)'} | {', '.join(change.new) or '(removed)'} |"
              for change in moved]  # fmt: skip
    failed = [result for result in results if not result.passed]
    breakers = sorted({breaker.change.label for result in failed for breaker in result.breakers})
    if failed:
        lines += ["", "### Breakers", ""]
        if any(result.breakers for result in failed):
            lines += ["| breaker | variant | moved along | with it alone |", "|---|---|---|---|"]
            for result in failed:
                for breaker in result.breakers:
                    along = ", ".join(str(change) for change in breaker.along) or "nothing"
                    lines.append(f"| **{breaker.change.label}** | {result.name} | {along} | {breaker.detail.replace('|', '/')} |")
        for result in failed:
            if result.harmless:
                lines.append(f"\n{result.name}: its failing tests pass with each of these alone: "
                             f"{', '.join(change.label for change in result.harmless)}.")  # fmt: skip
            for note in result.notes:
                lines.append(f"\n{result.name}: {note}.")
            if result.bisect_seconds:
                lines.append(f"\n{result.name}: trying each package alone took {result.bisect_seconds:.0f} s.")
        lines += ["", f"breakers: {', '.join(breakers) if breakers else 'none found'}"]
    elif wrote:
        lines += ["", f"Wrote the candidate pins to `{wrote.relative_to(TEMPLATE) if wrote.is_relative_to(TEMPLATE) else wrote}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME", help="only this variant (repeatable)")
    parser.add_argument("--list-variants", action="store_true", help="print the variants and their answers")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME", help="move only this pin (repeatable)")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR", help="also look here for packages")
    parser.add_argument("--write-pins", action="store_true", help=f"when green, copy the candidate over {PINS.name}")
    parser.add_argument("--summary", type=Path, metavar="FILE", help="append the result as Markdown (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the projects go (emptied first; default: {WORK})")
    for server, (_, variable, default) in SERVERS.items():
        parser.add_argument(f"--{server}-url", default=default, metavar="URL", help=f"{server} for the tests (as {variable})")
    arguments = parser.parse_args(argv)
    if arguments.list_variants:
        for name, answers in VARIANTS.items():
            print(f"{name}: {' '.join(f'{key}={value}' for key, value in answers.items()) or '(defaults)'}")
        return 0
    unknown = [name for name in arguments.variant if name not in VARIANTS]
    if unknown:
        print(f"error: no variant {', '.join(unknown)}; there are: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    try:
        return run(arguments)
    except TierError as error:
        print(f"[tomorrow] error: {error}", file=sys.stderr)
        return 2


def run(arguments: argparse.Namespace) -> int:
    variants = arguments.variant or list(VARIANTS)
    urls = {server: getattr(arguments, f"{server}_url") for server in SERVERS}
    silent = sorted({server for name in variants for server in servers_of(VARIANTS[name]) if not answers_server(urls[server])})
    if silent:
        raise TierError(
            "no answer from " + ", ".join(f"{server} at {urls[server]} (--{server}-url)" for server in silent)
            + ": the variants' tests need them"
        )
    find_links = [str(Path(location).resolve()) if Path(location).exists() else location for location in arguments.find_links]
    work: Path = arguments.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    tested = Pins(PINS.read_text(encoding="utf-8"))

    which = ", ".join(arguments.upgrade_package) if arguments.upgrade_package else "every pin"
    say(f"resolving the candidate pins: {which} at its newest allowed version ...")
    candidate = resolve_pins(work / "candidate-pins.txt", upgrade=not arguments.upgrade_package,
                             packages=arguments.upgrade_package, find_links=find_links)  # fmt: skip
    moved = changes(tested, candidate)
    say(f"tested pins: files before {tested.exclude_newer}; candidate: before {candidate.exclude_newer}")
    if not moved:
        text = (f"## Tomorrow tier: nothing to move\n\nEvery tested pin is the newest allowed version of files "
                f"uploaded before {candidate.exclude_newer}.\n")  # fmt: skip
        print(text)
        if arguments.summary:
            with arguments.summary.open("a", encoding="utf-8") as handle:
                handle.write(text)
        return 0
    say(f"{len(moved)} package{'s move' if len(moved) > 1 else ' moves'}:")
    for change in moved:
        print(f"    {change}", flush=True)

    template = copy_template(work / "template")
    env_of = {
        name: clean_env(
            **server_env(VARIANTS[name], urls),
            **({"UV_FIND_LINKS": ",".join(filter(None, [os.environ.get("UV_FIND_LINKS"), *find_links]))} if find_links else {}),
        )
        for name in variants
    }
    results = [run_variant(name, template, candidate, work, env_of[name]) for name in variants]

    singles: dict[str, Pins] = {}

    def single_pins(package: str) -> Pins:
        say(f"resolving the tested pins with only {package} moved ...")
        return resolve_pins(work / f"pins-{package}.txt", upgrade=False, packages=[package], find_links=find_links,
                            exclude_newer=candidate.exclude_newer)  # fmt: skip

    movable = [change for change in moved if change.movable]
    for result in results:
        if not result.passed and not result.reason.startswith("tests skipped"):
            bisect(result, template, tested, movable, singles, single_pins, work, env_of[result.name])

    green = all(result.passed for result in results)
    wrote = None
    if green and arguments.write_pins:
        shutil.copyfile(work / "candidate-pins.txt", PINS)
        wrote = PINS
    text = summary(candidate.exclude_newer, moved, results, wrote=wrote)
    print()
    print(text, flush=True)
    if arguments.summary:
        with arguments.summary.open("a", encoding="utf-8") as handle:
            handle.write(text)
    return 0 if green else 1


if __name__ == "__main__":
    sys.exit(main())
