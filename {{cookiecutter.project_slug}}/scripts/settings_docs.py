"""Write the settings' documentation from ``settings.py``, the one place a setting is written.

    python scripts/settings_docs.py           make docs: rewrite settings.yml and the README's table
    python scripts/settings_docs.py --check   make lint: exit 1, naming the file and the key, if either
                                              has drifted, or if the chart's settings name an unknown
                                              key or hold an invalid value

``settings.yml`` lists every setting with its default, its help and its valid values as a
comment; the README's table (between its two ``settings`` markers) gives each setting's
flag, environment variable and default.  Neither is edited by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from {{ cookiecutter.package_name }}.chassis import config
from {{ cookiecutter.package_name }}.chassis.config import (
    SettingSpec,
    nested_yaml,
    yaml_scalar,
)
from {{ cookiecutter.package_name }}.settings import (
    CONFIG_ENV_VAR,
    ENV_PREFIX,
    Settings,
    UpstreamSettings,
    iter_specs,
)

PROJECT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = PROJECT / "settings.yml"
README = PROJECT / "README.md"
CHART_VALUES = next((PROJECT / "charts").glob("*/values.yaml"), None)
TABLE_START = "<!-- settings: written by `make docs` from settings.py -->"
TABLE_END = "<!-- end of settings -->"
WIDTH = 100
# Each upstream declared in settings.py gets these settings, under its own name.
UPSTREAM_SECTION = "upstreams.<name>"

# A generated text, line by line, with the setting each line documents ("" for none).
Lines = list[tuple[str, str]]


def settings_yml(specs: Iterable[SettingSpec]) -> Lines:
    example = next(spec for spec in iter_specs() if spec.key == "server.port")
    lines: Lines = [
        ("# The service's settings, each with its default. Written by `make docs` from settings.py:", ""),
        ("# edit that file, not this one.", ""),
        ("# Each key can also be set by an environment variable or a flag, which win over this file:", ""),
        (f"#   {example.key}  <->  {example.env_var}  <->  {example.flag}", ""),
        (f"# This file is read from the working directory, or named by --config or {CONFIG_ENV_VAR}.", ""),
        ("", ""),
    ]

    def entry(spec: SettingSpec) -> list[str]:
        valid = spec.describe()
        text = spec.help if valid == "a string" else f"{spec.help} Valid: {valid}."
        if spec.secret:
            text += " A secret: in production set it by its environment variable, not here."
        comment = textwrap.wrap(text, WIDTH - 2 - 2 * (spec.key.count(".")))
        return [*(f"# {line}" for line in comment), f"{spec.name}: {yaml_scalar(spec.default)}"]

    lines += nested_yaml(specs, entry, blank_line=True)
    lines += [
        ("", ""),
        ("# Other services this one calls: each upstream declared in settings.py has a section, e.g.", ""),
        ("# upstreams:", ""),
        ("#   catalog:", ""),
        ("#     base_url: http://catalog:8080", ""),
        ("#     retries: 2", ""),
    ]
    return lines


def readme_table(specs: Iterable[SettingSpec]) -> Lines:
    lines: Lines = [
        (TABLE_START, ""),
        ("| setting (`settings.yml`) | flag | environment variable | default |", ""),
        ("|---|---|---|---|", ""),
    ]
    for spec in specs:
        default = "(none)" if spec.default is None else f"`{yaml_scalar(spec.default)}`"
        if spec.secret:
            default += " (a secret: redacted by `config show`)"
        lines.append((f"| `{spec.key}` | `{spec.flag}` | `{spec.env_var}` | {default} |", spec.key))
    lines.append((TABLE_END, ""))
    return lines


def documented_specs() -> list[SettingSpec]:
    """Every setting; in place of the declared upstreams, those each gets (``upstreams.<name>.*``)."""
    declared = list(iter_specs())
    per_upstream = [
        dataclasses.replace(spec, section=UPSTREAM_SECTION)
        for spec in config.iter_specs(UpstreamSettings, ENV_PREFIX)
    ]
    specs: list[SettingSpec] = []
    for section in dataclasses.fields(Settings):
        if section.name == "upstreams":
            specs += per_upstream
        else:
            specs += [spec for spec in declared if spec.section == section.name]
    return specs


def readme_with_table(readme: str, table: Lines) -> str:
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    return readme[:start] + "\n".join(text for text, _ in table) + readme[end:]


def first_drift(current: str, expected: Lines) -> str | None:
    """The key (or a line number) where ``current`` first differs from ``expected``; None if equal."""
    wanted = [text for text, _ in expected]
    found = current.split("\n")
    if found and found[-1] == "":
        found.pop()
    if found == wanted:
        return None
    matcher = difflib.SequenceMatcher(a=wanted, b=found, autojunk=False)
    _, at, _, at_found, _ = next(op for op in matcher.get_opcodes() if op[0] != "equal")
    keys = [key for _, key in expected[at:]] + [""]
    key = next((key for key in keys if key), "")
    where = f"line {at_found + 1}"
    return f"{key} ({where})" if key else where


def check_chart_values(specs: list[SettingSpec]) -> list[str]:
    """Problems with the chart's ``settings`` values: unknown keys, invalid values."""
    if CHART_VALUES is None:
        return []
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8")) or {}
    by_key = {spec.key: spec for spec in specs}
    problems = []
    for key, value in flatten(values.get("settings") or {}):
        spec = by_key.get(key)
        if spec is None:
            problems.append(f"{CHART_VALUES.relative_to(PROJECT)}: settings.{key} is not a setting")
            continue
        try:
            spec.parse(value)
        except ValueError as error:
            problems.append(f"{CHART_VALUES.relative_to(PROJECT)}: settings.{key}: expected {error}")
    return problems


def flatten(values: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from flatten(value, f"{key}.")
        else:
            yield key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file has drifted; write nothing")
    check = parser.parse_args(argv).check
    declared = list(iter_specs())
    expected_yml = settings_yml(declared)
    expected_table = readme_table(documented_specs())
    readme = README.read_text(encoding="utf-8")
    if TABLE_START not in readme or TABLE_END not in readme:
        print(f"README.md: the settings table's markers are missing ({TABLE_START} ... {TABLE_END})")
        return 1
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    outputs: list[tuple[Path, str, Lines, Callable[[], str]]] = [
        (SETTINGS_FILE, read(SETTINGS_FILE), expected_yml, lambda: join(expected_yml) + "\n"),
        (README, readme[start:end], expected_table, lambda: readme_with_table(readme, expected_table)),
    ]
    problems = check_chart_values([*declared, *documented_specs()])
    for path, current, expected, rewritten in outputs:
        drift = first_drift(current, expected)
        if drift is None:
            continue
        if check:
            problems.append(f"{path.name} is out of date at {drift}: run `make docs`")
        else:
            path.write_text(rewritten(), encoding="utf-8")
            print(f"wrote {path.name}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def join(lines: Lines) -> str:
    return "\n".join(text for text, _ in lines)


if __name__ == "__main__":
    sys.exit(main())
