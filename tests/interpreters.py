"""The CPythons a generated project supports, found on this machine or made from Debian's packages.

3.11 to 3.13 run on this machine: the interpreter running these tests, a pyenv build, or
``python3.X`` on PATH; a version with none of them is reported as absent, with the reason.
3.14 and 3.15 always run: Debian sid's own ``python3.14`` and ``python3.15`` in a root file
system that mmdebstrap makes once (about 15 s) and that is cached in
``~/.cache/pychassis/pythons``, outside the checkout. Commands run in it through ``chroot``,
inside a private mount namespace (``unshare``) whose mounts (the work folder, ``/dev``,
``/proc`` and a fresh ``/tmp``) vanish with the command; they see none of the host's pip
configuration and no ``PIP_*`` variable. The network is the host's, so a service started in
it is reached on 127.0.0.1, as are the host's PostgreSQL and Redis, and its process id is
the one ``subprocess`` returns (every step ``exec``s the next), so signals reach it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers import TEMPLATE_DIR, clean_env

SUPPORTED: tuple[str, ...] = tuple(
    json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))["_supported_pythons"]
)
LOWEST, NEWEST = SUPPORTED[0], SUPPORTED[-1]
FROM_DEBIAN = ("3.14", "3.15")

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pychassis" / "pythons"
SID_ROOT = CACHE / "sid"
# What a user's machine has besides Python: git (a generated project is a checkout) and make.
SID_PACKAGES = "python3.14,python3.14-venv,python3.15,python3.15-venv,ca-certificates,make,git"
# Where the work folder appears inside the root file system.
WORK_IN_ROOT = "/pychassis"
HOST_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/resolv.conf", "/etc/hosts")
ROOT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Mount what the command needs, privately, then become it: chroot, env and python each exec.
ENTER_ROOT = """set -e
root=$1 work=$2
shift 2
mount --bind "$work" "$root/pychassis"
mount --rbind /dev "$root/dev"
mount --bind /proc "$root/proc"
mount -t tmpfs tmpfs "$root/tmp"
exec chroot "$root" "$@"
"""


class Absent(Exception):
    """This machine has no such interpreter; the message says what was looked for."""


@dataclass(frozen=True)
class Interpreter:
    """One CPython: ``python`` as its own system names it, in ``root`` (None: this machine)."""

    version: str
    python: str
    work: Path
    root: Path | None = None

    def path(self, host_path: Path) -> str:
        """``host_path`` (inside the work folder) as this interpreter's system sees it."""
        if self.root is None:
            return str(host_path)
        return f"{WORK_IN_ROOT}/{host_path.relative_to(self.work)}"

    def command(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run ``argv`` with this interpreter's system."""
        if self.root is None:
            return argv, clean_env(**(env or {}))
        # uv trusts its own CA list unless told to use the system's, where the host's (the proxy's CA
        # in it) is copied in; only uv reads this switch.
        inner_env = {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "UV_SYSTEM_CERTS": "1", **(env or {})}
        assignments = [f"{name}={value}" for name, value in inner_env.items()]
        command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", ENTER_ROOT, "sh",
                   str(self.root), str(self.work), "env", "-i", *assignments, *argv]
        return command, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 900,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if cwd is not None:
            argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", self.path(cwd), *argv]
        command, environment = self.command(argv, env)
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def popen(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``argv`` (stdout and stderr merged); its process id is the command's own."""
        command, environment = self.command(argv, env)
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)


def find(version: str, work: Path) -> Interpreter:
    """The interpreter of ``version`` whose commands see ``work``; raises Absent when there is none."""
    if version in FROM_DEBIAN:
        return Interpreter(version, f"/usr/bin/python{version}", work, root=sid_root())
    for candidate in host_candidates(version):
        if reports_version(candidate, version):
            return Interpreter(version, candidate, work)
    raise Absent(f"Python {version} is not on this machine: not the interpreter running the tests, "
                 f"no pyenv build under {pyenv_root() / 'versions'}, no working python{version} on PATH")


def host_candidates(version: str) -> list[str]:
    candidates = []
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates.append(sys.executable)
    builds = sorted((pyenv_root() / "versions").glob(f"{version}.*/bin/python"), key=patch_level, reverse=True)
    candidates += [str(build) for build in builds]
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    return candidates


def pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def patch_level(python: Path) -> int:
    patch = python.parent.parent.name.split(".")[2]
    return int(patch) if patch.isdigit() else -1


def reports_version(python: str, version: str) -> bool:
    """Whether ``python`` runs (a pyenv shim of an unselected version does not) and is ``version``."""
    try:
        result = subprocess.run([python, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip() == version


def sid_root() -> Path:
    """Debian sid with python3.14 and python3.15, made once per machine; the host's CA, DNS and hosts copied in."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test processes may ask at once
        wanted = [f"python{version}" for version in FROM_DEBIAN] + ["git"]
        if not all((SID_ROOT / "usr" / "bin" / program).exists() for program in wanted):
            make_sid_root()
    for name in HOST_FILES:
        shutil.copyfile(name, SID_ROOT / name.lstrip("/"))
    return SID_ROOT


def make_sid_root() -> None:
    for tool in ("mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            raise RuntimeError(f"{tool} is needed for Python {' and '.join(FROM_DEBIAN)}: "
                               "sudo apt-get install mmdebstrap util-linux coreutils")
    partial = CACHE / "sid.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(SID_ROOT, ignore_errors=True)
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--aptopt=Acquire::Check-Valid-Until \"false\"",
         f"--include={SID_PACKAGES}", "sid", str(partial)],
        check=True, capture_output=True, timeout=900,
    )
    (partial / WORK_IN_ROOT.lstrip("/")).mkdir()
    partial.rename(SID_ROOT)
