"""Write the template's ``settings.yml`` and its README's settings table from the template's ``settings.py``.

    .venv/bin/python tests/tools/settings_docs.py           rewrite both in the template
    .venv/bin/python tests/tools/settings_docs.py --check   exit 1 if either differs

A generated project writes these files with its own ``make docs``; the template must ship
them already written, for every combination of answers.  This renders the project without
and with the optional services, runs the project's ``scripts/settings_docs.py`` in each,
and turns the two results back into one Jinja template: the lines only the full render has
go into ``{% if %}`` blocks of the service they document, and the answers go back to
their variables.  ``tests/test_render.py`` then checks that each render's ``make docs``
agrees (``scripts/settings_docs.py --check``), so neither file can drift.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2]
PROJECT_DIR = TEMPLATE / "{{cookiecutter.project_slug}}"
ANSWERS = {"project_name": "My Service", "project_slug": "my-service", "package_name": "my_service", "http_port": "8000"}
FULL = {"database": "postgresql", "cache": "redis", "broker": "rabbitmq", "auth": "oidc"}
# The renders that tell the broker's lines apart: the other broker's, and one without a database.
OTHER_BROKER = {**FULL, "broker": "nats"}
NO_DATABASE = {**FULL, "database": "none"}
# What each answer becomes again, longest first so the slug's words are not replaced inside others.
VARIABLES = [
    ("MY_SERVICE", "{{ cookiecutter.package_name | upper }}"),
    ("my_service", "{{ cookiecutter.package_name }}"),
    ("my-service", "{{ cookiecutter.project_slug }}"),
]
PORT_LINES = {"  port: 8000": "  port: {{ cookiecutter.http_port }}"}
PORT_CELL = ("| `8000` |", "| `{{ cookiecutter.http_port }}` |")
TABLE_START = "<!-- settings: written by `make docs` from settings.py -->"
TABLE_END = "<!-- end of settings -->"
CONDITIONS = {
    "database": 'cookiecutter.database == "postgresql"',
    "cache": 'cookiecutter.cache == "redis"',
    "broker": 'cookiecutter.broker != "none"',
    "auth": 'cookiecutter.auth == "oidc"',
}
# What auth = oidc adds to every upstream: how its calls get credentials.
UPSTREAM_CREDENTIALS = ("credentials", "token_url", "client_id", "client_secret", "token_scope")
RABBITMQ = 'cookiecutter.broker == "rabbitmq"'


def render(template: Path, into: Path, extra: dict[str, str]) -> Path:
    answers = [f"{name}={value}" for name, value in {**ANSWERS, **extra}.items()]
    env = {**os.environ, "PYCHASSIS_SKIP_LOCK": "1"}
    subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(into), str(template), *answers],
        check=True, capture_output=True, env=env, timeout=120,
    )
    project = into / ANSWERS["project_slug"]
    subprocess.run(
        [sys.executable, "scripts/settings_docs.py"],
        cwd=project, check=True, capture_output=True, env={**env, "PYTHONPATH": "src"}, timeout=120,
    )
    return project


def table_of(readme: str) -> list[str]:
    start = readme.index(TABLE_START)
    end = readme.index(TABLE_END) + len(TABLE_END)
    return readme[start:end].split("\n")


def merge(plain: list[str], full: list[str]) -> list[str]:
    """``full``'s lines, those missing from ``plain`` inside an ``{% if %}`` of the service they name."""
    merged: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=plain, b=full, autojunk=False).get_opcodes():
        if tag == "equal":
            merged += plain[i1:i2]
            continue
        if tag != "insert":
            raise SystemExit(f"the optional services change lines they do not add: {plain[i1:i2]!r}")
        chunk, after = full[j1:j2], []
        if chunk[-1] == "" and merged and merged[-1] == "":
            # The same text with the blank line at the block's start: a `{%-` tag would eat a
            # blank line at its end.
            chunk, after = ["", *chunk[:-1]], [merged.pop()]
        merged += blocks_by_service(chunk) + after
    return merged


def broker_variants(full: list[str], other: list[str], no_database: list[str]) -> list[str]:
    """``full``'s lines, those of the broker that differ in ``other`` (the other broker's render) in
    an ``{% if %}``/``{% else %}``, and those of the broker that ``no_database`` lacks in an ``{% if %}``
    of the database (the outbox's settings)."""
    kept = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=full, b=no_database, autojunk=False).get_opcodes():
        if tag == "equal":
            kept.update(range(i1, i2))
    in_broker = broker_lines(full)
    needs_database = [index in in_broker and index not in kept for index in range(len(full))]
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=full, b=other, autojunk=False).get_opcodes():
        if tag == "equal":
            out += with_database_blocks(full[i1:i2], needs_database[i1:i2])
            continue
        if any(needs_database[i1:i2]) or not all(index in in_broker for index in range(i1, i2)):
            raise SystemExit(f"the brokers differ outside their own settings: {full[i1:i2]!r}")
        out += [f"{{%- if {RABBITMQ} %}}", *full[i1:i2], "{%- else %}", *other[j1:j2], "{%- endif %}"]
    return out


def broker_lines(lines: list[str]) -> set[int]:
    """The indices of the lines that document the broker's settings (settings.yml's section, table rows)."""
    found, inside = set(), False
    for index, line in enumerate(lines):
        inside = line == "broker:" or (inside and line != "")
        if inside or mentions(line, "broker"):
            found.add(index)
    return found


def with_database_blocks(lines: list[str], needs_database: list[bool]) -> list[str]:
    out: list[str] = []
    for index, line in enumerate(lines):
        if needs_database[index] and (index == 0 or not needs_database[index - 1]):
            out.append(f"{{%- if {CONDITIONS['database']} %}}")
        out.append(line)
        if needs_database[index] and (index + 1 == len(lines) or not needs_database[index + 1]):
            out.append("{%- endif %}")
    return out


def blocks_by_service(lines: list[str]) -> list[str]:
    """``lines`` split where they move from one service's settings to the next, each block in its if."""
    named = [next((name for name in CONDITIONS if mentions(line, name)), None) for line in lines]
    out: list[str] = []
    current: str | None = None
    for index, line in enumerate(lines):
        # A blank line or a tag belongs to the next line that names a service; any other line to
        # the one before.
        service = named[index] or current
        if line == "" or line.startswith("{%"):
            service = next((name for name in named[index:] if name is not None), current)
        if service is None:
            raise SystemExit(f"cannot tell which service this line documents: {line!r}")
        if service != current:
            if current is not None:
                out.append("{%- endif %}")
            out.append(f"{{%- if {CONDITIONS[service]} %}}")
            current = service
        out.append(line)
    if current is not None:
        out.append("{%- endif %}")
    return out


def mentions(line: str, service: str) -> bool:
    if service == "auth" and line.startswith(tuple(f"| `upstreams.<name>.{name}`" for name in UPSTREAM_CREDENTIALS)):
        return True
    return line.startswith((f"{service}:", f"| `{service}."))


def as_template(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = PORT_LINES.get(line, line)
        if line.startswith("| `server.port` |"):
            line = line.replace(*PORT_CELL)
        for answer, variable in VARIABLES:
            line = line.replace(answer, variable)
        out.append(line)
    return out


def jinja_lines(lines: list[str]) -> str:
    """The lines as a file; each ``{%- ... %}`` tag eats the line break before it."""
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the template to write (a copy of it, in tests)")
    arguments = parser.parse_args()
    check, template = arguments.check, arguments.template.resolve()
    project_dir = template / PROJECT_DIR.name
    with tempfile.TemporaryDirectory() as folder:
        renders = [
            render(template, Path(folder) / name, answers)
            for name, answers in (("plain", {}), ("full", FULL), ("other", OTHER_BROKER), ("nodb", NO_DATABASE))
        ]
        yml = [(project / "settings.yml").read_text().splitlines() for project in renders]
        tables = [table_of((project / "README.md").read_text()) for project in renders]
        settings_yml = jinja_lines(as_template(merge(yml[0], broker_variants(*yml[1:]))))
        table = jinja_lines(as_template(merge(tables[0], broker_variants(*tables[1:])))).removesuffix("\n")
    readme_path = project_dir / "README.md"
    readme = readme_path.read_text()
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    new_readme = readme[:start] + table + readme[end:]
    changed = [
        path for path, text in ((project_dir / "settings.yml", settings_yml), (readme_path, new_readme))
        if path.read_text() != text
    ]
    if check:
        for path in changed:
            print(f"{path.relative_to(template)} differs from what settings.py gives: run {__file__}")
        return 1 if changed else 0
    for path, text in ((project_dir / "settings.yml", settings_yml), (readme_path, new_readme)):
        path.write_text(text)
    for path in changed:
        print(f"wrote {path.relative_to(template)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
