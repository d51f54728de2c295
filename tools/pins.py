"""Resolve the tested pins: every package of every variant, for every supported CPython and platform.

    python tools/pins.py                       keep the current pins that still fit (after a dependency changed)
    python tools/pins.py --upgrade             move every pin to its newest allowed version
    python tools/pins.py --upgrade-package X   move X (and what it needs) only
    python tools/pins.py --output FILE         write elsewhere (the tomorrow tier's candidate pins)
    python tools/pins.py --exclude-newer DATE  see only files uploaded before DATE (default: now), as the
                                               tomorrow tier does to move one pin to the candidate's version

The pins live in ``{{cookiecutter.project_slug}}/tested-pins.txt``. The post-generation hook cuts
each project's ``uv.lock`` from them (as uv constraints, seeing only files uploaded before the
pins' date), so a template commit generates next month what its CI verified today. They are the
union of what two renders declare (every option on, once with each broker), resolved universally
from the lowest supported Python. Move them only through ``make tomorrow`` (or this script
followed by the template's whole suite): a pin that reaches ``main`` is one the suite has run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
PINS = TEMPLATE / "{{cookiecutter.project_slug}}" / "tested-pins.txt"
LOWEST_PYTHON = "3.11"
# Every option on, once with each broker: together they declare every dependency a variant can have.
UNION_RENDERS = (
    {"database": "postgresql", "cache": "redis", "broker": "rabbitmq", "auth": "oidc"},
    {"database": "postgresql", "cache": "redis", "broker": "nats", "auth": "oidc"},
)
EXCLUDE_NEWER = "# exclude-newer: "
HEADER = """\
# The dependency set the template's CI verified: every package any variant installs, for CPython
# {lowest} and newer on every platform (a package pinned per Python where it must be).
# The post-generation hook cuts each project's uv.lock from these pins, then removes this file.
# Written by tools/pins.py; moved by `make tomorrow` at the template's root. Never edit by hand.
{exclude_newer}{date}
"""


class PinsError(Exception):
    """The pins could not be resolved; the file was left as it was."""


def uv() -> str:
    """The uv beside this Python (the template's dev environment pins it)."""
    found = Path(sys.executable).with_name("uv")
    if not found.exists():
        raise PinsError("uv is not installed beside this Python: run it from the template's .venv")
    return str(found)


def declared_requirements(project: Path) -> list[str]:
    """What a rendered project declares: its dependencies and every dependency group's."""
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    found = list(data["project"]["dependencies"])
    for group in data.get("dependency-groups", {}).values():
        found += [item for item in group if isinstance(item, str)]  # not {include-group = ...}
    return found


def render(answers: dict[str, str], into: Path) -> Path:
    """One project rendered (not locked: the hook's locking is what the pins feed)."""
    from cookiecutter.main import cookiecutter

    os.environ["PYCHASSIS_SKIP_LOCK"] = "1"
    folder = cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(into), extra_context=answers)
    return Path(folder)


def union_requirements(scratch: Path) -> list[str]:
    found: set[str] = set()
    for number, answers in enumerate(UNION_RENDERS):
        project = render({**answers, "python_version": LOWEST_PYTHON, "verify": "false"}, scratch / str(number))
        found.update(declared_requirements(project))
    return sorted(found, key=str.lower)


def exclude_newer_of(pins: Path) -> str | None:
    """The date the pins were resolved at: files uploaded later are not part of them."""
    if not pins.exists():
        return None
    for line in pins.read_text(encoding="utf-8").splitlines():
        if line.startswith(EXCLUDE_NEWER):
            return line.removeprefix(EXCLUDE_NEWER).strip()
    return None


def now() -> str:
    """The current UTC time as the pins' header and uv's ``--exclude-newer`` write it."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def resolve(
    output: Path,
    *,
    upgrade: bool,
    upgrade_packages: list[str],
    find_links: list[str],
    exclude_newer: str | None = None,
) -> str:
    """Resolve the union into ``output`` (kept pins are preferred unless upgrading); returns the date.

    ``exclude_newer`` (default: now) is the last upload time seen; files from ``find_links`` are seen
    whatever their time.
    """
    date = exclude_newer or now()
    with tempfile.TemporaryDirectory(prefix="pins-") as folder:
        scratch = Path(folder)
        (scratch / "union.in").write_text("\n".join(union_requirements(scratch)) + "\n", encoding="utf-8")
        candidate = scratch / "pins.txt"
        if PINS.exists() and not upgrade:
            candidate.write_text(PINS.read_text(encoding="utf-8"), encoding="utf-8")
        command = [
            uv(), "pip", "compile", str(scratch / "union.in"), "--output-file", str(candidate),
            "--universal", "--python-version", LOWEST_PYTHON, "--exclude-newer", date,
            "--no-header", "--no-annotate", "--quiet",
        ]  # fmt: skip
        if upgrade:
            command.append("--upgrade")
        for package in upgrade_packages:
            command += ["--upgrade-package", package]
        for location in find_links:
            command += ["--find-links", location]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PinsError(f"could not resolve the pins:\n{result.stderr.strip()}")
        body = candidate.read_text(encoding="utf-8")
    header = HEADER.format(lowest=LOWEST_PYTHON, exclude_newer=EXCLUDE_NEWER, date=date)
    output.write_text(header + body, encoding="utf-8")
    return date


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upgrade", action="store_true", help="every pin to its newest allowed version")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME", help="move this pin only")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR", help="also look here for packages")
    parser.add_argument("--output", type=Path, default=PINS, help=f"where to write (default: {PINS.name})")
    parser.add_argument("--exclude-newer", metavar="DATE", help="ignore files uploaded after DATE (default: now)")
    arguments = parser.parse_args()
    try:
        resolve(arguments.output, upgrade=arguments.upgrade, upgrade_packages=arguments.upgrade_package,
                find_links=arguments.find_links, exclude_newer=arguments.exclude_newer)
    except PinsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
