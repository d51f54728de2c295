"""Settings declared as frozen dataclasses, and loading them from their sources.

The service declares its settings in ``settings.py`` with ``section`` and ``setting``;
this module turns each declaration into a ``SettingSpec`` (key, flag, environment
variable, validation) and resolves every spec from its sources:
command-line flag > environment variable > settings file > default.

Instead of its environment variable, a setting can be given by ``<ENV_VAR>_FILE`` naming a
file that holds the value, read at start: the convention of the official container images,
made for secrets mounted as files (a Kubernetes Secret).  The value is the file's content
without the line break that ends it; setting both variables is an error.

Errors are ``SettingsError``: one line naming the key and where the bad value came
from, never repeating a secret.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import math
import os
import re
import stat
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import (
    Any,
    Generic,
    Literal,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
    get_type_hints,
)
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml

REDACTED = "***"
DEFAULT_CONFIG_FILE = Path("settings.yml")
# Bytes a file named by <ENV_VAR>_FILE may hold: a value (a URL, a key), not a disk image or /dev/zero.
MAX_VALUE_FILE_SIZE = 64 * 1024

Source = Literal["default", "file", "env", "env_file", "cli"]
RootT = TypeVar("RootT")

_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def check_url(value: str, schemes: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is a URL with one of ``schemes``, a host and a valid port."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as error:
        raise ValueError(f"it cannot be parsed ({error})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"its scheme is {parts.scheme or 'missing'}")
    if not parts.hostname:
        raise ValueError("it names no host")
    if port == 0:
        raise ValueError("its port is 0")


def check_http_url(value: str) -> None:
    check_url(value, ("http", "https"))


def check_networks(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a comma-separated list of IP addresses or CIDR ranges."""
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            ipaddress.ip_network(item)
        except ValueError as error:
            raise ValueError(str(error)) from None


def redact_url(value: str) -> str:
    """``value`` with a URL's password and query values replaced by ``***``; other text unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"
    query = "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def setting(
    *,
    default: Any,
    help: str,  # noqa: A002 - the same word click uses
    secret: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: tuple[str, str] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """Declare one setting: default, help text, whether it is secret, and its bounds or pattern.

    ``pattern`` is a regular expression the whole text must match, with a description of it.
    ``check`` looks deeper (a URL's port, a network's prefix) and raises ``ValueError`` saying
    what is wrong, in words that never repeat a secret.
    """
    metadata = {
        "help": help,
        "secret": secret,
        "minimum": minimum,
        "maximum": maximum,
        "pattern": pattern,
        "check": check,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(setting,))
def section(cls: type[Any]) -> type[Any]:
    """Make a class a frozen section of settings (a dataclass whose fields use ``setting``)."""
    return dataclasses.dataclass(frozen=True)(cls)


class SettingsError(Exception):
    """A setting, or the settings file, is not valid.  The message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What one declared setting is: derived from its field, used for every source."""

    section: str  # dotted for nested sections: "upstreams.catalog"
    name: str
    env_prefix: str
    type: Any
    default: Any
    help: str
    secret: bool
    minimum: float | None
    maximum: float | None
    pattern: tuple[str, str] | None
    check: Callable[[Any], None] | None = None

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def param_name(self) -> str:
        """The identifier click passes the flag's value under."""
        return f"{self.section}_{self.name}".replace(".", "_")

    @property
    def flag(self) -> str:
        return "--" + self.param_name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return f"{self.env_prefix}_{self.param_name}".upper()

    @property
    def file_env_var(self) -> str:
        """The environment variable that names a file holding the value (a secret mounted as a file)."""
        return f"{self.env_var}_FILE"

    @property
    def is_flag(self) -> bool:
        return _optional_inner(self.type) is bool

    @property
    def metavar(self) -> str:
        """How ``--help`` shows the flag's value."""
        kind = _optional_inner(self.type)
        if get_origin(kind) is Literal:
            return "[" + "|".join(str(choice) for choice in get_args(kind)) + "]"
        return {int: "INTEGER", float: "NUMBER", bool: "BOOLEAN"}.get(kind, "TEXT")

    def describe(self) -> str:
        """What a valid value looks like, for help texts and error messages."""
        kind = _optional_inner(self.type)
        if get_origin(kind) is Literal:
            text = "one of " + ", ".join(str(choice) for choice in get_args(kind))
        elif self.pattern is not None:
            text = self.pattern[1]
        else:
            noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
            text = noun.get(kind, str(kind))
            if self.minimum is not None and self.maximum is not None:
                text += f" from {_plain(self.minimum)} to {_plain(self.maximum)}"
            elif self.minimum is not None:
                text += f" of at least {_plain(self.minimum)}"
            elif self.maximum is not None:
                text += f" of at most {_plain(self.maximum)}"
        if _is_optional(self.type):
            text += " (empty for none)"
        return text

    def parse(self, raw: Any) -> Any:
        """Turn a raw value (text from a flag or the environment, or YAML data) into a valid value."""
        if _is_optional(self.type) and (raw is None or raw == ""):
            return None
        kind = _optional_inner(self.type)
        value = _convert(kind, raw)
        if value is None:
            raise ValueError(self.describe())
        if self.pattern is not None and not re.fullmatch(self.pattern[0], value):
            raise ValueError(self.describe())
        if isinstance(value, int | float) and not isinstance(value, bool):
            too_low = self.minimum is not None and value < self.minimum
            too_high = self.maximum is not None and value > self.maximum
            if too_low or too_high:
                raise ValueError(self.describe())
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as problem:
                raise ValueError(f"{self.describe()}, but {problem}") from None
        return value


@dataclasses.dataclass(frozen=True)
class LoadedSettings(Generic[RootT]):
    """Settings (an instance of the root class loaded) with where each value came from."""

    settings: RootT
    specs: tuple[SettingSpec, ...]
    sources: Mapping[str, Source]
    config_file: Path | None


MIN_SCRUBBED_PASSWORD = 4


def secret_values(settings: Any, env_prefix: str) -> list[str]:
    """The values of the secret settings that are set, and the passwords in them when they are URLs.

    For scrubbing what leaves the process (error reports): no secret may be in it, even quoted
    in an exception's message.  A password shorter than ``MIN_SCRUBBED_PASSWORD`` (a development
    default such as ``dev``) is left out: replacing it in every word would garble the report.
    """
    found: list[str] = []
    for spec in iter_specs(type(settings), env_prefix):
        if not spec.secret:
            continue
        value = settings
        for part in spec.key.split("."):
            value = getattr(value, part)
        if isinstance(value, str) and value:
            found.append(value)
            with contextlib.suppress(ValueError):
                password = urlsplit(value).password
                if password and len(password) >= MIN_SCRUBBED_PASSWORD:
                    found.append(password)
    return found


def iter_specs(root: type[Any], env_prefix: str) -> Iterator[SettingSpec]:
    """Every setting declared in ``root``, section by section, in declaration order."""
    yield from _walk_section(root, root(), "", env_prefix)


def _walk_section(
    section_type: type[Any], defaults: Any, path: str, env_prefix: str
) -> Iterator[SettingSpec]:
    """The settings of one section, and of the sections nested in it (such as ``upstreams.catalog``)."""
    hints = get_type_hints(section_type)
    for item in dataclasses.fields(section_type):
        kind, default = hints[item.name], getattr(defaults, item.name)
        if _is_section(kind):
            yield from _walk_section(kind, default, f"{path}.{item.name}".lstrip("."), env_prefix)
            continue
        yield SettingSpec(
            section=path,
            name=item.name,
            env_prefix=env_prefix,
            type=kind,
            default=default,
            help=item.metadata["help"],
            secret=item.metadata["secret"],
            minimum=item.metadata["minimum"],
            maximum=item.metadata["maximum"],
            pattern=item.metadata["pattern"],
            check=item.metadata["check"],
        )


def config_env_var(env_prefix: str) -> str:
    """The environment variable that names the settings file."""
    return f"{env_prefix}_CONFIG"


def load_settings(
    root: type[RootT],
    env_prefix: str,
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
) -> LoadedSettings[RootT]:
    """Resolve every setting from its sources (flag > environment > file > default) and validate it.

    ``cli`` maps a setting's ``param_name`` to the flag's value (``None`` when not given).
    ``environ`` defaults to the process environment, read now.
    ``config_file`` is the ``--config`` value; without it ``<env_prefix>_CONFIG`` is used,
    then ``./settings.yml`` if it exists.
    """
    cli = cli or {}
    environ = os.environ if environ is None else environ
    path, file_values = _read_config_file(config_file, environ, config_env_var(env_prefix))
    specs = tuple(iter_specs(root, env_prefix))
    _reject_unknown_keys(file_values, specs, path)

    sources: dict[str, Source] = {}
    values: dict[str, Any] = {}
    for spec in specs:
        values[spec.key], sources[spec.key] = _resolve(spec, cli, environ, file_values, path)
    settings = _build_section(root, values, "")
    return LoadedSettings(settings=settings, specs=specs, sources=sources, config_file=path)


def resolve_setting(
    root: type[Any],
    env_prefix: str,
    key: str,
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
) -> Any:
    """The value of the one setting ``key``, from the sources ``load_settings`` reads, in its order.

    For when the settings as a whole do not load: how to report that may depend on one of them
    (the logging format).  The settings file is read only when neither a flag nor the environment
    gives the setting.  Raises ``SettingsError`` when this setting, or the file, is what is wrong.
    """
    cli = cli or {}
    environ = os.environ if environ is None else environ
    spec = next(spec for spec in iter_specs(root, env_prefix) if spec.key == key)
    path: Path | None = None
    file_values: dict[str, Any] = {}
    given = cli.get(spec.param_name) is not None or spec.env_var in environ or spec.file_env_var in environ
    if not given:
        path, file_values = _read_config_file(config_file, environ, config_env_var(env_prefix))
    return _resolve(spec, cli, environ, file_values, path)[0]


def _build_section(section_type: type[Any], values: Mapping[str, Any], path: str) -> Any:
    """An instance of ``section_type`` (and the sections nested in it) from values by key."""
    hints = get_type_hints(section_type)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(section_type):
        key = f"{path}.{item.name}".lstrip(".")
        kind = hints[item.name]
        fields[item.name] = _build_section(kind, values, key) if _is_section(kind) else values[key]
    return section_type(**fields)


def dump_settings(loaded: LoadedSettings[Any]) -> str:
    """The effective settings as YAML, each key commented with its source; secrets redacted."""

    def entry(spec: SettingSpec) -> list[str]:
        value = _get(loaded.settings, spec.key)
        if spec.secret and value not in (None, ""):
            shown = REDACTED
        else:
            shown = redact_url(value) if isinstance(value, str) else value
        return [f"{spec.name}: {yaml_scalar(shown)}  # {loaded.sources[spec.key]}"]

    header = [f"# settings file: {loaded.config_file}"] if loaded.config_file is not None else []
    body = [line for line, _ in nested_yaml(loaded.specs, entry)]
    return "\n".join([*header, *body]) + "\n"


def nested_yaml(
    specs: Iterable[SettingSpec], entry: Callable[[SettingSpec], list[str]], *, blank_line: bool = False
) -> list[tuple[str, str]]:
    """YAML lines for ``specs`` nested by section, each with the key of the setting it belongs to.

    ``entry`` gives each setting's own lines; a section's heading (and, with ``blank_line``,
    the empty line before a top-level section) belongs to the setting that opens it.
    """
    lines: list[tuple[str, str]] = []
    open_sections: list[str] = []
    for spec in specs:
        path = spec.section.split(".")
        shared = 0
        while shared < min(len(path), len(open_sections)) and path[shared] == open_sections[shared]:
            shared += 1
        if blank_line and shared == 0 and lines:
            lines.append(("", spec.key))
        lines.extend((f"{'  ' * depth}{path[depth]}:", spec.key) for depth in range(shared, len(path)))
        open_sections = path
        lines.extend((f"{'  ' * len(path)}{line}", spec.key) for line in entry(spec))
    return lines


def _get(settings: Any, key: str) -> Any:
    """The value of ``key`` (``section.name``, or deeper) in ``settings``."""
    value = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _resolve(
    spec: SettingSpec,
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    path: Path | None,
) -> tuple[Any, Source]:
    candidates: list[tuple[Source, bool, Any, str]] = [
        ("cli", cli.get(spec.param_name) is not None, cli.get(spec.param_name), spec.flag),
        ("env", spec.env_var in environ, environ.get(spec.env_var), f"environment variable {spec.env_var}"),
        ("file", spec.key in file_values, file_values.get(spec.key), f"settings file {path}"),
    ]
    if spec.file_env_var in environ:
        if spec.env_var in environ:
            raise SettingsError(
                f"setting {spec.key} is given twice, by {spec.env_var} and by {spec.file_env_var}: set one"
            )
        value_file = environ[spec.file_env_var]
        origin = f"file {value_file}, named by {spec.file_env_var}"
        candidates[1] = ("env_file", True, _read_value_file(spec, value_file), origin)
    for source, present, raw, origin in candidates:
        if present:
            try:
                return spec.parse(raw), source
            except ValueError as problem:
                shown = _shown(spec, source, raw)
                raise SettingsError(
                    f"invalid setting {spec.key} = {shown} (from {origin}): expected {problem}"
                ) from None
    return spec.default, "default"


def _shown(spec: SettingSpec, source: str, raw: object) -> str:
    """A refused value as an error may show it: never a secret, nor a file's content.

    A file named by ``<ENV_VAR>_FILE`` may be the wrong one (a Secret wired to another
    setting's variable, ``/proc/self/environ``): whatever it holds stays out of the message.
    """
    if spec.secret:
        return REDACTED
    if source == "env_file":
        return "(the file's content, not shown)"
    return repr(redact_url(raw) if isinstance(raw, str) else raw)


def _read_value_file(spec: SettingSpec, path: str) -> str:
    """The content of the file holding a setting's value; the error names the file, never its content.

    Only a regular file is read (a FIFO without a writer would block the start for good, a
    device never end), opened without blocking, and at most ``MAX_VALUE_FILE_SIZE`` of it.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise _unreadable(spec, path, error.strerror or repr(error)) from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _unreadable(spec, path, "not a regular file")
        with os.fdopen(descriptor, "rb", closefd=False) as file:  # reads on until the size or the end
            content = file.read(MAX_VALUE_FILE_SIZE + 1)
    except OSError as error:
        raise _unreadable(spec, path, error.strerror or repr(error)) from None
    finally:
        os.close(descriptor)
    if len(content) > MAX_VALUE_FILE_SIZE:
        raise _unreadable(spec, path, f"over {MAX_VALUE_FILE_SIZE // 1024} KiB")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise _unreadable(spec, path, "not UTF-8 text") from None
    # A file written by `echo` or an editor ends with a line break; a Kubernetes Secret's does not.
    return text.removesuffix("\n").removesuffix("\r")


def _unreadable(spec: SettingSpec, path: str, reason: str) -> SettingsError:
    return SettingsError(
        f"setting {spec.key}: the file {path} named by {spec.file_env_var} cannot be read ({reason})"
    )


def _read_config_file(
    config_file: Path | str | None, environ: Mapping[str, str], env_var: str
) -> tuple[Path | None, dict[str, Any]]:
    """Find and read the settings file; return its values flattened to ``section.name`` keys."""
    if config_file is not None:
        path, named_by = Path(config_file), "--config"
    elif environ.get(env_var):
        path, named_by = Path(environ[env_var]), env_var
    elif DEFAULT_CONFIG_FILE.is_file():
        path, named_by = DEFAULT_CONFIG_FILE, ""
    else:
        return None, {}
    if not path.is_file():
        raise SettingsError(f"settings file {path} (named by {named_by}) does not exist or is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise SettingsError(f"settings file {path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"settings file {path} cannot be read: {error}") from None
    return path, _flatten(data, path)


def _flatten(data: Any, path: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must be a mapping of sections such as 'server:'")
    flat: dict[str, Any] = {}
    for section_name, values in data.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise SettingsError(f"settings file {path}: '{section_name}' must be a mapping of settings")
        flat.update(_flatten_section(values, str(section_name)))
    return flat


def _flatten_section(values: dict[Any, Any], prefix: str) -> dict[str, Any]:
    """``{"catalog": {"retries": 3}}`` under ``upstreams`` → ``{"upstreams.catalog.retries": 3}``."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}.{name}"
        if isinstance(value, dict):
            flat.update(_flatten_section(value, key))
        else:
            flat[key] = value
    return flat


def _reject_unknown_keys(
    file_values: Mapping[str, Any], specs: tuple[SettingSpec, ...], path: Path | None
) -> None:
    known = [spec.key for spec in specs]
    for key in file_values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known settings: {', '.join(known)}"
            raise SettingsError(f"unknown setting '{key}' in settings file {path}{hint}")


def _convert(kind: Any, raw: Any) -> Any:
    """Convert ``raw`` to ``kind``; ``None`` when it cannot be."""
    if get_origin(kind) is Literal:
        text = raw.strip().lower() if isinstance(raw, str) else raw
        return text if text in get_args(kind) else None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        return True if text in _TRUE_WORDS else False if text in _FALSE_WORDS else None
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        try:
            return int(str(raw).strip()) if isinstance(raw, str) else None
        except ValueError:
            return None
    if kind is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            number = float(raw)
        elif isinstance(raw, str):
            try:
                number = float(raw.strip())
            except ValueError:
                return None
        else:
            return None
        return number if math.isfinite(number) else None
    if kind is str:
        return raw if isinstance(raw, str) else None
    raise TypeError(f"settings of type {kind!r} are not supported")


def _is_section(kind: Any) -> bool:
    """Whether a field holds a section of settings (rather than one setting)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _is_optional(kind: Any) -> bool:
    return get_origin(kind) in (Union, types.UnionType) and type(None) in get_args(kind)


def _optional_inner(kind: Any) -> Any:
    if _is_optional(kind):
        return next(arg for arg in get_args(kind) if arg is not type(None))
    return kind


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()
