"""Fast tier: render projects (no locking) and check what comes out."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from helpers import DEFAULT_PACKAGE, DEFAULT_SLUG, TEMPLATE_DIR, TEMPLATE_SYNTAX, clean_env, files_of, render, text_files_of

EXPECTED_FILES = [
    "pyproject.toml",
    "settings.yml",
    "Makefile",
    "README.md",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".github/dependabot.yml",
    ".github/workflows/ci.yml",
    ".github/workflows/upgrade.yml",
    "scripts/settings_docs.py",
    "src/{package}/__init__.py",
    "src/{package}/__main__.py",
    "src/{package}/cli.py",
    "src/{package}/settings.py",
    "src/{package}/chassis/config.py",
    "src/{package}/chassis/commands.py",
    "src/{package}/chassis/parts.py",
    "src/{package}/app.py",
    "src/{package}/api_access.py",
    "src/{package}/views/__init__.py",
    "src/{package}/views/items.py",
    "src/{package}/services/__init__.py",
    "src/{package}/services/items.py",
    "src/{package}/chassis/logging.py",
    "src/{package}/chassis/health.py",
    "src/{package}/chassis/server.py",
    "src/{package}/chassis/lifecycle.py",
    "src/{package}/chassis/errors.py",
    "src/{package}/chassis/http_client.py",
    "src/{package}/chassis/circuit_breaker.py",
    "src/{package}/chassis/openapi.py",
    "tests/conftest.py",
]

# Each edge or combination is linted and type-checked as generated.
LINTED_RENDERS = {
    "defaults": {},
    "postgresql": {"database": "postgresql"},
    "redis": {"cache": "redis"},
    "rabbitmq": {"broker": "rabbitmq"},
    "nats-postgresql": {"broker": "nats", "database": "postgresql"},
    "edges": {
        # The longest names the hook accepts (50 characters) must still lint clean.
        "project_name": "Billing Reconciliation And Settlement Gateway",
        "project_slug": "billing-reconciliation-and-settlement-gateway-serv",
        "package_name": "billing_reconciliation_and_settlement_gateway_serv",
        "http_port": 65535,
        "python_version": "3.13",
        "database": "postgresql",
        "cache": "redis",
        "broker": "rabbitmq",
        "version": "1.0.0rc1",
    },
    "lowest-port": {"project_name": "A", "project_slug": "a", "package_name": "a", "http_port": 1},
}

# Longer explanations belong in prose or lists below a table, where they can wrap.
MAX_TABLE_CELL = 200

# cookiecutter renders answers as Jinja before any hook runs, so literal braces reach the
# template through a raw block; what arrives must then land verbatim, never rendered again.
HOSTILE_ANSWER = (
    'Quote " single \' backslash \\ tab \t newline \n {% raw %}{{ cookiecutter.project_name }} {%{% endraw %} '
    '"""; import os; os.system("touch /tmp/pychassis-pwned") # ]] } \u00e9\u00e8 \u65e5\u672c '
    "\U0001f680 \u202e rtl \u007f del \u0085 nel \u2028 sep"
)
HOSTILE_TEXT = HOSTILE_ANSWER.replace("{% raw %}", "").replace("{% endraw %}", "")


def is_helm_template(path: Path) -> bool:
    """Helm's templates are Go templates: their braces are Helm's, copied as they are (test_chart renders them)."""
    return "templates" in path.parts and "charts" in path.parts


def without_grafana_legends(path: Path, text: str) -> str:
    """Grafana's legends name labels as ``{{http_route}}``: they belong in the dashboard; anything else does not."""
    if path.name != "service.json" or "dashboards" not in path.parts:
        return text
    return re.sub(r'"legendFormat": "[^"]*"', "", text)


def without_github_expressions(path: Path, text: str) -> str:
    """GitHub's own ``${{ ... }}`` expressions belong in workflows; anything else there must not."""
    if ".github" not in path.parts:
        return text
    return re.sub(r"\$\{\{[^{}]*\}\}", "", text)


def assert_no_template_syntax(project: Path) -> None:
    for path in text_files_of(project):
        assert not any(mark in str(path.relative_to(project)) for mark in TEMPLATE_SYNTAX), path
        text = without_grafana_legends(path, without_github_expressions(path, path.read_text(encoding="utf-8")))
        marks = ("cookiecutter.",) if is_helm_template(path) else TEMPLATE_SYNTAX
        for mark in marks:
            assert mark not in text, f"{mark!r} left in {path.relative_to(project)}"


def assert_parses(project: Path) -> dict:
    """Every Python, TOML and YAML file of the project parses; returns pyproject.toml's data."""
    for path in files_of(project):
        if path.suffix == ".py":
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        elif path.suffix in {".yml", ".yaml"} and not is_helm_template(path):
            yaml.safe_load(path.read_text(encoding="utf-8"))
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


def run_tool(project: Path, *command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=project, capture_output=True, text=True, env=clean_env(), check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def run_settings_docs(project: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The project's ``make docs`` (``--check``: its part of ``make lint``); asserts success."""
    result = subprocess.run(
        [sys.executable, "scripts/settings_docs.py", *arguments],
        cwd=project, capture_output=True, text=True, env=clean_env(PYTHONPATH="src"), check=False, timeout=60,
    )
    assert result.returncode == 0, f"settings_docs.py {' '.join(arguments)}:\n{result.stdout}{result.stderr}"
    return result


def test_defaults_render_every_expected_file(tmp_path: Path) -> None:
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    project = result.project()
    for name in EXPECTED_FILES:
        assert (project / name.format(package=DEFAULT_PACKAGE)).is_file(), name
    assert_no_template_syntax(project)
    pyproject = assert_parses(project)
    assert pyproject["project"]["name"] == DEFAULT_SLUG
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert pyproject["project"]["scripts"] == {DEFAULT_SLUG: f"{DEFAULT_PACKAGE}.cli:main"}
    assert set(pyproject["dependency-groups"]) == {"dev", "test"}
    settings = yaml.safe_load((project / "settings.yml").read_text(encoding="utf-8"))
    assert settings["server"]["port"] == 8000
    assert "PYCHASSIS_SKIP_LOCK" in result.stdout
    assert not (project / "uv.lock").exists()
    assert not (project / "tested-pins.txt").exists()


def test_without_backing_services_nothing_of_them_remains(tmp_path: Path) -> None:
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    project = result.project()
    for path in text_files_of(project):
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"postgres|sqlalchemy|alembic|asyncpg|migrat|redis", text, re.IGNORECASE)
        assert not found, f"{path.relative_to(project)} mentions {found}"
    assert not (project / "src" / DEFAULT_PACKAGE / "migrations").exists()


@pytest.mark.parametrize("name", sorted(LINTED_RENDERS))
def test_rendered_project_is_lint_and_type_clean(tmp_path: Path, name: str) -> None:
    answers = LINTED_RENDERS[name]
    result = render(tmp_path, answers)
    assert result.returncode == 0, result.stderr
    project = next(tmp_path.iterdir())
    assert_no_template_syntax(project)
    assert_parses(project)
    run_tool(project, "ruff", "check", "--no-cache", ".")
    run_tool(project, "ruff", "format", "--no-cache", "--check", ".")
    run_tool(project, "mypy", "--no-incremental", "--cache-dir", "/dev/null")
    run_settings_docs(project, "--check")
    if "http_port" in answers:
        settings = yaml.safe_load((project / "settings.yml").read_text(encoding="utf-8"))
        assert settings["server"]["port"] == answers["http_port"]


def test_hostile_free_text_gives_a_valid_project(tmp_path: Path) -> None:
    pwned = Path("/tmp/pychassis-pwned")
    pwned.unlink(missing_ok=True)
    answers = {
        "project_name": HOSTILE_ANSWER,
        "description": HOSTILE_ANSWER,
        "author_name": HOSTILE_ANSWER,
    }
    result = render(tmp_path, answers)
    assert result.returncode == 0, result.stderr
    assert not pwned.exists(), "an answer was executed as code"
    project = next(tmp_path.iterdir())
    pyproject = assert_parses(project)
    # Free text arrives exactly as given, whatever it contains.
    assert pyproject["project"]["description"] == HOSTILE_TEXT
    assert pyproject["project"]["authors"] == [{"name": HOSTILE_TEXT, "email": "you@example.com"}]
    # The slug derived from a hostile name is still a valid slug.
    assert project.name.replace("-", "").isalnum() and project.name.islower()
    assert len(project.name) <= 40
    run_tool(project, "ruff", "check", "--no-cache", ".")
    run_tool(project, "ruff", "format", "--no-cache", "--check", ".")
    # A hostile author is still the author of the first commit (git drops the characters its format cannot hold).
    commits = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=project, capture_output=True, text=True)
    assert commits.stdout.strip() == "1", result.stdout + commits.stderr


REFUSALS = [
    ({"package_name": "My-Package"}, "package_name = 'My-Package': must be a lowercase Python identifier"),
    ({"package_name": "1service"}, "package_name = '1service': must be a lowercase Python identifier"),
    ({"package_name": "class"}, "package_name = 'class': is a Python keyword"),
    ({"package_name": "match"}, "package_name = 'match': is a Python keyword"),
    ({"package_name": "json"}, "package_name = 'json': shadows a module of the Python standard library"),
    ({"package_name": "asyncio"}, "package_name = 'asyncio': shadows a module of the Python standard library"),
    ({"package_name": "test"}, "package_name = 'test': is reserved by the project layout or by test discovery"),
    ({"package_name": "quart"}, "package_name = 'quart': shadows a module the service depends on"),
    ({"package_name": "tests"}, "package_name = 'tests': is reserved"),
    ({"project_slug": "My_Service"}, "project_slug = 'My_Service': must be lowercase letters, digits and single hyphens"),
    ({"project_slug": "svc--x"}, "project_slug = 'svc--x': must be lowercase letters"),
    ({"project_slug": "-svc"}, "project_slug = '-svc': must be lowercase letters"),
    ({"project_slug": "s" * 51}, f"project_slug = '{'s' * 51}': must be at most 50 characters long"),
    ({"package_name": "p" * 51}, f"package_name = '{'p' * 51}': must be at most 50 characters long"),
    ({"http_port": 0}, "http_port = '0': must be a whole number from 1 to 65535"),
    ({"http_port": 65536}, "http_port = '65536': must be a whole number from 1 to 65535"),
    ({"http_port": "80a"}, "http_port = '80a': must be a whole number"),
    ({"author_email": "not-an-address"}, "author_email = 'not-an-address': must be an e-mail address"),
    ({"author_email": "a@b"}, "author_email = 'a@b': must be an e-mail address"),
    ({"version": "one"}, "version = 'one': must be a PEP 440 version"),
    ({"version": "1.0-final"}, "version = '1.0-final': must be a PEP 440 version"),
    ({"description": "   "}, "description = '   ': must not be empty"),
]


@pytest.mark.parametrize(("answers", "message"), REFUSALS, ids=[m.split(" = ")[0] + "-" + str(i) for i, (_, m) in enumerate(REFUSALS)])
def test_bad_answers_are_refused_with_a_clear_line(tmp_path: Path, answers: dict, message: str) -> None:
    result = render(tmp_path, answers)
    assert result.returncode != 0
    assert f"error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "nothing may be rendered for refused answers"


CHOICE_REFUSALS = [
    ({"python_version": "3.10"}, "3.10 provided for choice variable python_version, but the choices are "
                                 "['3.11', '3.12', '3.13', '3.14', '3.15']."),
    ({"python_version": "3.11.4"}, "3.11.4 provided for choice variable python_version"),
    ({"database": "mysql"}, "mysql provided for choice variable database, but the choices are ['none', 'postgresql']."),
    ({"cache": "Redis"}, "Redis provided for choice variable cache, but the choices are ['none', 'redis']."),
    ({"broker": "kafka"}, "kafka provided for choice variable broker, but the choices are ['none', 'rabbitmq', 'nats']."),
    ({"auth": "basic"}, "basic provided for choice variable auth, but the choices are ['none', 'oidc']."),
]


@pytest.mark.parametrize(("answers", "message"), CHOICE_REFUSALS, ids=[next(iter(a)) + "-" + str(i) for i, (a, _) in enumerate(CHOICE_REFUSALS)])
def test_a_closed_answer_outside_its_list_is_refused_by_cookiecutter_naming_the_field(
    tmp_path: Path, answers: dict, message: str
) -> None:
    """The closed answers are choice lists (a menu when prompted): cookiecutter itself refuses any other
    value before a hook runs, in its last line, naming the field and the choices (after a traceback of
    its own: cookiecutter 2.7's command line does not catch the ValueError it raises)."""
    result = render(tmp_path, answers)
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir()), "nothing may be rendered for refused answers"


def test_the_python_choices_are_the_supported_pythons() -> None:
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    assert context["python_version"] == context["_supported_pythons"]


def test_all_refusals_are_reported_at_once(tmp_path: Path) -> None:
    result = render(tmp_path, {"http_port": 0, "version": "x", "author_email": "x"})
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(" = ")[0] for line in errors] == ["error: author_email", "error: version", "error: http_port"]


def test_cookiecutter_json_prompts_every_answer() -> None:
    spec = json.loads((Path(__file__).parents[1] / "cookiecutter.json").read_text(encoding="utf-8"))
    answers = [key for key in spec if not key.startswith("_")]
    assert set(spec["__prompts__"]) == set(answers)


def table_cells(markdown: str) -> list[tuple[int, str]]:
    """(line number, cell) for every cell of every table outside code blocks; ``\\|`` stays inside its cell."""
    cells, fenced = [], False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.lstrip().startswith("|"):
            row = line.strip().removeprefix("|").removesuffix("|")
            cells += [(number, cell.strip()) for cell in re.split(r"(?<!\\)\|", row)]
    return cells


def test_table_cells_are_short_in_the_template_readme() -> None:
    cells = table_cells((TEMPLATE_DIR / "README.md").read_text(encoding="utf-8"))
    assert len(cells) > 100, "the README's tables are found"
    long = [f"line {number}: {len(cell)} characters: {cell[:80]}..." for number, cell in cells if len(cell) > MAX_TABLE_CELL]
    assert not long, "\n".join(long)


def test_the_table_cell_check_finds_a_long_cell() -> None:
    """So that a passing check above means something."""
    table = "| a | b |\n|---|---|\n| `x\\|y` | " + "z" * 201 + " |\n```\n| " + "q" * 300 + " |\n```\n"
    assert [(number, len(cell)) for number, cell in table_cells(table)] == [(1, 1), (1, 1), (2, 3), (2, 3), (3, 6), (3, 201)]


# Files that must read the same whatever the answers: an optional part plugs into them (the
# app factory calls api_access.py, which the hook picks for the auth answer).
NO_CONDITIONALS = ["app.py", "chassis/errors.py", "cli.py", "api_access_none.py", "api_access_oidc.py"]
# The few conditionals left where the optional parts are built (about three for each of the
# database, the cache and the broker) or given to the tests (one each).
AT_MOST_A_HANDFUL = {"services/__init__.py": 11, "../../tests/conftest.py": 7}


def test_shared_modules_carry_no_template_conditionals() -> None:
    package = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "src" / "{{cookiecutter.package_name}}"
    for name in NO_CONDITIONALS:
        text = (package / name).read_text(encoding="utf-8")
        assert "{%" not in text, f"{name} has template tags"
    for name, limit in AT_MOST_A_HANDFUL.items():
        tags = re.findall(r"\{%-?\s*if\b", (package / name).read_text(encoding="utf-8"))
        assert len(tags) <= limit, f"{name} has {len(tags)} if-tags"


@pytest.mark.parametrize(("auth", "verifies_tokens"), [("none", False), ("oidc", True)])
def test_the_auth_answer_picks_who_may_call_the_api(tmp_path: Path, auth: str, verifies_tokens: bool) -> None:
    """app.py reads the same for every answer: it calls api_access.py, the module of the chosen auth."""
    result = render(tmp_path, {"auth": auth})
    assert result.returncode == 0, result.stderr
    package = result.project() / "src" / DEFAULT_PACKAGE
    assert sorted(path.name for path in package.glob("api_access*.py")) == ["api_access.py"]
    access = (package / "api_access.py").read_text(encoding="utf-8")
    assert "def install_api_access(" in access
    assert ("install_auth(app, settings.auth" in access) == verifies_tokens
    assert (package / "chassis" / "auth.py").is_file() == verifies_tokens
    assert "install_api_access(app, settings, lifecycle, BLUEPRINTS" in (package / "app.py").read_text(encoding="utf-8")


def test_template_settings_docs_are_what_settings_py_gives() -> None:
    """The template's settings.yml and README table, for every answer, as `make docs` writes them."""
    result = subprocess.run(
        [sys.executable, "tests/tools/settings_docs.py", "--check"],
        cwd=TEMPLATE_DIR, capture_output=True, text=True, env=clean_env(), check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_adding_a_setting_is_settings_py_and_make_docs(tmp_path: Path) -> None:
    """The README's "add a setting": a field in settings.py, `make docs`; lint fails until then."""
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    project = result.project()
    settings_py = project / "src" / DEFAULT_PACKAGE / "settings.py"
    anchor = "class HttpSettings:\n"
    field = '    page_size: int = setting(default=50, help="Items per page.", minimum=1, maximum=500)\n'
    text = settings_py.read_text(encoding="utf-8")
    assert anchor in text
    settings_py.write_text(text.replace(anchor, anchor + field), encoding="utf-8")

    drift = subprocess.run(
        [sys.executable, "scripts/settings_docs.py", "--check"],
        cwd=project, capture_output=True, text=True, env=clean_env(PYTHONPATH="src"), check=False, timeout=60,
    )
    assert drift.returncode == 1
    assert re.fullmatch(
        r"settings\.yml is out of date at http\.page_size \(line \d+\): run `make docs`\n"
        r"README\.md is out of date at http\.page_size \(line \d+\): run `make docs`\n",
        drift.stdout,
    ), drift.stdout

    assert run_settings_docs(project).stdout.splitlines() == ["wrote settings.yml", "wrote README.md"]
    run_settings_docs(project, "--check")
    run_tool(project, "ruff", "check", "--no-cache", ".")
    run_tool(project, "mypy", "--no-incremental", "--cache-dir", "/dev/null")
    documented = yaml.safe_load((project / "settings.yml").read_text(encoding="utf-8"))
    assert documented["http"]["page_size"] == 50
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert f"| `http.page_size` | `--http-page-size` | `{DEFAULT_PACKAGE.upper()}_HTTP_PAGE_SIZE` | `50` |" in readme


def test_make_docs_refuses_chart_settings_that_are_not_settings(tmp_path: Path) -> None:
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    project = result.project()
    values = next((project / "charts").glob("*/values.yaml"))
    text = values.read_text(encoding="utf-8")
    values.write_text(text.replace("  logging:\n    level: info\n", "  logging:\n    level: loud\n    colour: red\n"))
    check = subprocess.run(
        [sys.executable, "scripts/settings_docs.py", "--check"],
        cwd=project, capture_output=True, text=True, env=clean_env(PYTHONPATH="src"), check=False, timeout=60,
    )
    assert check.returncode == 1
    chart = values.relative_to(project)
    assert check.stdout.splitlines() == [
        f"{chart}: settings.logging.level: expected one of debug, info, warning, error, critical",
        f"{chart}: settings.logging.colour is not a setting",
    ]


BROKER_WORDS = r"\b(broker|rabbitmq|aio_pika|nats|cloudevents?|outbox|asyncapi)\b"


@pytest.mark.parametrize(
    ("answers", "present", "absent"),
    [
        ({}, [], ["chassis/broker.py", "events.py", "consumers", "services/messaging.py"]),
        (
            {"broker": "rabbitmq"},
            ["chassis/broker.py", "chassis/memory_inbox.py", "services/published_items.py", "consumers"],
            ["chassis/broker_rabbitmq.py", "chassis/broker_nats.py", "chassis/outbox.py", "chassis/inbox.py"],
        ),
        (
            {"broker": "nats", "database": "postgresql"},
            ["chassis/broker.py", "chassis/outbox.py", "chassis/inbox.py", "services/outbox_items.py"],
            ["chassis/broker_nats.py", "chassis/memory_inbox.py", "services/published_items.py"],
        ),
    ],
)
def test_the_broker_brings_its_files_and_only_its_own(
    tmp_path: Path, answers: dict, present: list[str], absent: list[str]
) -> None:
    result = render(tmp_path, answers)
    assert result.returncode == 0, result.stderr
    project = result.project()
    package = project / "src" / DEFAULT_PACKAGE
    for name in present:
        assert (package / name).exists(), name
    for name in absent:
        assert not (package / name).exists(), name
    broker = answers.get("broker", "none")
    if broker != "none":
        module = (package / "chassis" / "broker.py").read_text(encoding="utf-8")
        assert ("aio_pika" in module) == (broker == "rabbitmq")
        assert (project / "tests" / "broker_probe.py").exists()
        return
    # What the service is and says: its code, settings, dependencies, compose file and chart values.
    paths = [*package.rglob("*.py"), *(project / name for name in ("pyproject.toml", "settings.yml", "Makefile"))]
    paths += [project / "docker-compose.yml", project / "charts" / DEFAULT_SLUG / "values.yaml"]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not re.search(BROKER_WORDS, text, re.IGNORECASE), f"{path.relative_to(project)} mentions the broker"
