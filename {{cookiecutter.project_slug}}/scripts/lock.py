"""Resolve the dependencies into requirements.lock and requirements-dev.lock, pinned with hashes.

    python scripts/lock.py             make lock: keep the current pins that are still allowed
    python scripts/lock.py --upgrade   make upgrade: the newest allowed versions; prints old -> new

uv resolves for every platform and every supported Python at once (``--universal``). Each lock
is resolved into a temporary file first; the lock files are replaced only when every resolution
succeeded, so a failure (no network, a conflict) leaves them exactly as they were.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# Each lock file and the extras it holds besides the runtime dependencies.
LOCKS = {
    "requirements.lock": [],
    "requirements-dev.lock": ["--extra", "dev"],
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


class LockError(Exception):
    """Resolution failed; the lock files were left untouched."""


def lowest_python() -> str:
    """The lowest supported Python, from ``requires-python`` (e.g. ">=3.11" -> "3.11")."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    match = re.search(r">=\s*(\d+\.\d+)", project["requires-python"])
    if match is None:
        raise LockError(f"requires-python {project['requires-python']!r} names no lowest version")
    return match.group(1)


def find_uv() -> str:
    """uv from this environment (the dev lock pins it), else from PATH."""
    beside_python = Path(sys.executable).with_name("uv")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("uv")
    if found is None:
        raise LockError("uv is not installed: run `make install` (or `pip install uv`) first")
    return found


def pins(lock: Path) -> dict[str, str]:
    """Package name -> pinned version(s); a package pinned per platform shows all its versions."""
    found: dict[str, set[str]] = {}
    if lock.exists():
        for line in lock.read_text(encoding="utf-8").splitlines():
            match = PIN.match(line)
            if match:
                found.setdefault(match.group(1).lower(), set()).add(match.group(2))
    return {name: ", ".join(sorted(versions)) for name, versions in found.items()}


def resolve(uv: str, lock: str, extras: list[str], python: str, *, upgrade: bool, into: Path) -> None:
    """Resolve one lock into ``into``; uv keeps the pins already there unless upgrading."""
    target = into / lock
    if (PROJECT / lock).exists() and not upgrade:
        shutil.copyfile(PROJECT / lock, target)
    command = [
        uv, "pip", "compile", "pyproject.toml", *extras,
        "--output-file", str(target),
        "--universal", "--python-version", python,
        "--generate-hashes", "--quiet", "--no-header",
    ]  # fmt: skip
    if upgrade:
        command.append("--upgrade")
    env = {**os.environ, "UV_HTTP_TIMEOUT": os.environ.get("UV_HTTP_TIMEOUT", "30")}
    result = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = "\n".join(f"    {line}" for line in result.stderr.strip().splitlines()[-12:])
        raise LockError(f"could not resolve {lock} (is the package index reachable?):\n{detail}")


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        lines.append(f"  {name:<32} {before or '(new)'} -> {after or '(removed)'}")
    return lines


def lock_all(*, upgrade: bool) -> list[str]:
    """Resolve every lock, then replace them together; returns a report of what changed."""
    uv, python = find_uv(), lowest_python()
    with tempfile.TemporaryDirectory(prefix=".lock-", dir=PROJECT) as scratch:
        for lock, extras in LOCKS.items():
            resolve(uv, lock, extras, python, upgrade=upgrade, into=Path(scratch))
        report = []
        for lock in LOCKS:
            changed = changes(pins(PROJECT / lock), pins(Path(scratch) / lock))
            report.append(f"{lock}: " + ("unchanged" if not changed else f"{len(changed)} changed"))
            report.extend(changed)
            # Same file system, so each replacement is atomic.
            os.replace(Path(scratch) / lock, PROJECT / lock)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upgrade", action="store_true", help="move every pin to its newest allowed version")
    upgrade = parser.parse_args().upgrade
    try:
        report = lock_all(upgrade=upgrade)
    except LockError as error:
        print(f"error: {error}", file=sys.stderr)
        print("requirements.lock and requirements-dev.lock are unchanged.", file=sys.stderr)
        return 1
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
