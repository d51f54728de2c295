"""A stand-in for the ``helm`` command, for ``make chart``: Helm's own code via helm-python-sdk.

Only what ``make chart`` runs:  helm lint --strict CHART [--values FILE]
                                helm template NAME CHART [--values FILE]
Exit code 1 with Helm's messages when the chart fails, as helm does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import helm_python as helm
import yaml

WARNING = 2  # lint message severities: 1 info, 2 warning, 3 error


def main() -> int:
    parser = argparse.ArgumentParser(prog="helm")
    commands = parser.add_subparsers(dest="command", required=True)
    lint = commands.add_parser("lint")
    lint.add_argument("--strict", action="store_true")
    lint.add_argument("chart", type=Path)
    template = commands.add_parser("template")
    template.add_argument("name")
    template.add_argument("chart", type=Path)
    for command in (lint, template):
        command.add_argument("--values", type=Path)
    args = parser.parse_args()
    values = yaml.safe_load(args.values.read_text(encoding="utf-8")) if args.values else None
    if args.command == "lint":
        report = helm.lint(args.chart, values, strict=args.strict)
        threshold = WARNING if args.strict else WARNING + 1
        problems = [*report["errors"], *(m for m in report["messages"] if m["severity"] >= threshold)]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    try:
        rendered = helm.Chart.load(args.chart).render(values, name=args.name, namespace="default", is_install=True)
    except Exception as error:  # Helm's rendering errors arrive as exceptions of the SDK
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print("\n---\n".join(rendered.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
