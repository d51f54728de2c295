"""Migrations: they build the schema the models describe, undo it, and run from the CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.chassis.database import create_engine
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.migrations import alembic_config, downgrade, upgrade
from {{ cookiecutter.package_name }}.models import Base
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, DatabaseSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = Path("src") / "{{ cookiecutter.package_name }}" / "migrations"


async def tables(settings: DatabaseSettings) -> list[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            names: list[str] = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            return sorted(names)
    finally:
        await engine.dispose()


async def differences_from_models(settings: DatabaseSettings) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_to_head_then_downgrade_to_base(database_settings: DatabaseSettings) -> None:
    assert await tables(database_settings) == []
    await asyncio.to_thread(upgrade, database_settings)
{%- if cookiecutter.broker != "none" %}
    assert await tables(database_settings) == ["alembic_version", "handled_messages", "items", "outbox"]
{%- else %}
    assert await tables(database_settings) == ["alembic_version", "items"]
{%- endif %}
    await asyncio.to_thread(downgrade, database_settings)
    assert await tables(database_settings) == ["alembic_version"]


async def test_the_migrations_build_what_the_models_describe(
    migrated_database_settings: DatabaseSettings,
) -> None:
    # A model changed without a migration shows here: `make migration` writes the missing one.
    assert await differences_from_models(migrated_database_settings) == []


async def test_migrate_command_upgrades_the_configured_database(database_settings: DatabaseSettings) -> None:
    env = {
        f"{ENV_PREFIX}_DATABASE_URL": database_settings.url,
        f"{ENV_PREFIX}_DATABASE_SCHEMA": database_settings.schema or "",
    }
    result = await asyncio.to_thread(CliRunner().invoke, main, ["migrate"], env=env)
    assert result.exit_code == 0, result.output
    assert "items" in await tables(database_settings)


def test_migrate_sql_prints_the_sql_without_a_database() -> None:
    env = {f"{ENV_PREFIX}_DATABASE_URL": "postgresql://nobody@db.invalid/app"}
    result = CliRunner().invoke(main, ["migrate", "--sql"], env=env)
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE items" in result.output
    assert "CONSTRAINT uq_items_name UNIQUE (name)" in result.output


def test_migrate_says_plainly_when_the_database_is_unreachable() -> None:
    env = {
        f"{ENV_PREFIX}_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/app",
        f"{ENV_PREFIX}_LOGGING_LEVEL": "critical",
    }
    result = CliRunner().invoke(main, ["migrate"], env=env)
    assert result.exit_code == 1
    assert "error: cannot reach the database to migrate" in result.output
    assert "Traceback" not in result.output


def migrate_in_one_line(url: str) -> str:
    """``migrate`` against ``url``: refused as a bad setting is (exit 2), in one line; returns it."""
    env = {f"{ENV_PREFIX}_DATABASE_URL": url, f"{ENV_PREFIX}_LOGGING_LEVEL": "critical"}
    result = CliRunner().invoke(main, ["migrate"], env=env)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot migrate: "), result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


def test_migrate_names_a_missing_database_and_the_command_that_creates_it(test_database_url: str) -> None:
    server = make_url(test_database_url)
    name = f"missing_{uuid.uuid4().hex[:12]}"  # never created
    output = migrate_in_one_line(server.set(database=name).render_as_string(hide_password=False))
    host, port = server.host or "localhost", server.port or 5432
    assert f'database "{name}" does not exist on {host}:{port}' in output
    user = f" -U {server.username}" if server.username else ""
    assert f"`createdb -h {host} -p {port}{user} {name}`" in output
    assert f"database.url ({ENV_PREFIX}_DATABASE_URL)" in output
    assert not server.password or server.password not in output


def test_migrate_names_the_setting_to_change_when_the_role_is_refused(test_database_url: str) -> None:
    server = make_url(test_database_url)
    role, password = f"no_role_{uuid.uuid4().hex[:12]}", f"not-the-password-{uuid.uuid4().hex}"
    output = migrate_in_one_line(
        server.set(username=role, password=password).render_as_string(hide_password=False)
    )
    assert f'PostgreSQL on {server.host or "localhost"}:{server.port or 5432} refused role "{role}"' in output
    assert f"set the role and password in database.url ({ENV_PREFIX}_DATABASE_URL)" in output
    assert password not in output


def test_make_migration_writes_a_clean_migration_from_the_models(
    migrated_database_settings: DatabaseSettings, tmp_path: Path
) -> None:
    # What `make migration` runs, on a copy of the project's migrations so they stay untouched.
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    skip_caches = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PROJECT_ROOT / MIGRATIONS, tmp_path / MIGRATIONS, ignore=skip_caches)
    env = {
        **os.environ,
        f"{ENV_PREFIX}_DATABASE_URL": migrated_database_settings.url,
        f"{ENV_PREFIX}_DATABASE_SCHEMA": migrated_database_settings.schema or "",
    }
    result = run(["alembic", "revision", "--autogenerate", "--message", "nothing new"], tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr

    [written] = (tmp_path / MIGRATIONS / "versions").glob("*_nothing_new.py")
    text = written.read_text(encoding="utf-8")
    assert f'down_revision: str | None = "{head_revision(migrated_database_settings)}"' in text
    assert "op.create_table" not in text, "the models and the migrations already agree"
    for check in (["check"], ["format", "--check"]):
        lint = run(["ruff", *check, str(written)], tmp_path, env)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def head_revision(settings: DatabaseSettings) -> str | None:
    """The latest migration's revision (the one a new migration follows)."""
    head: str | None = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    return head


def run(module_and_args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` with this interpreter."""
    command = [sys.executable, "-m", *module_and_args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


async def test_a_failing_migration_is_one_line_without_a_traceback(
    database_settings: DatabaseSettings,
) -> None:
    """A schema the role may not use (it does not exist) fails the upgrade: one line, exit 1."""
    env = {
        f"{ENV_PREFIX}_DATABASE_URL": database_settings.url,
        f"{ENV_PREFIX}_DATABASE_SCHEMA": "no_such_schema",
        f"{ENV_PREFIX}_LOGGING_LEVEL": "critical",
    }
    result = await asyncio.to_thread(CliRunner().invoke, main, ["migrate"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("error: the migration failed: ")
    assert result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
