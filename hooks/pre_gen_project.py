"""Refuse template answers that would produce a broken project.

Runs before anything is rendered.  Every refusal is one line that names the
field and the rule, and the hook exits 1 so cookiecutter/cruft stop cleanly.
Answers are read through ``tojson`` twice, so no answer can inject code here.

The closed answers (``python_version``, ``database``, ``cache``, ``broker``, ``auth``) are choice
lists in ``cookiecutter.json``: cookiecutter shows them as menus and itself refuses a value
outside them, naming the field and the choices, before this hook runs.

A ``package_name`` that shadows one of the service's dependencies (``quart``,
``yaml``...) is refused by the post-generation hook, from what the rendered
``pyproject.toml`` declares and then from what ``.venv`` really installs: under
cruft this hook is given no path to the template's files, and the rendered
``pyproject.toml`` holds exactly the chosen options' dependencies.
"""

import json
import keyword
import re
import sys

ANSWERS = {
    "project_name": json.loads({{ cookiecutter.project_name | tojson | tojson }}),
    "project_slug": json.loads({{ cookiecutter.project_slug | tojson | tojson }}),
    "package_name": json.loads({{ cookiecutter.package_name | tojson | tojson }}),
    "description": json.loads({{ cookiecutter.description | tojson | tojson }}),
    "author_name": json.loads({{ cookiecutter.author_name | tojson | tojson }}),
    "author_email": json.loads({{ cookiecutter.author_email | tojson | tojson }}),
    "version": json.loads({{ cookiecutter.version | tojson | tojson }}),
    "http_port": json.loads({{ cookiecutter.http_port | tojson | tojson }}),
    "verify": json.loads({{ cookiecutter.verify | tojson | tojson }}),
}

# Longer names make unwieldy imports, environment variables and image names.
MAX_NAME_LENGTH = 50

# Names that collide with the project's own layout or with test discovery.
RESERVED_NAMES = {"conftest", "setup", "site", "src", "test", "tests"}

SLUG_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PACKAGE_RE = re.compile(r"[a-z_][a-z0-9_]*")
EMAIL_RE = re.compile(r"[^@\s<>\"(),;:]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
# The canonical PEP 440 version pattern (from the ``packaging`` project).
PEP440_RE = re.compile(
    r"""
    v?
    (?:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>[-_\.]?(?P<pre_l>(a|b|c|rc|alpha|beta|pre|preview))[-_\.]?(?P<pre_n>[0-9]+)?)?
        (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_\.]?(?P<post_l>post|rev|r)[-_\.]?(?P<post_n2>[0-9]+)?))?
        (?P<dev>[-_\.]?(?P<dev_l>dev)[-_\.]?(?P<dev_n>[0-9]+)?)?
    )
    (?:\+(?P<local>[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?
    """,
    re.VERBOSE | re.IGNORECASE,
)
TRUE_WORDS = {"true", "yes", "y", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "0", "off"}


class Refusal(Exception):
    """An answer that breaks a rule; the message names the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        value = ANSWERS.get(field)
        super().__init__(f"{field} = {value!r}: {rule}")


def check_text(field: str) -> None:
    value = ANSWERS[field]
    if not isinstance(value, str) or not value.strip():
        raise Refusal(field, "must not be empty")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise Refusal(field, "must be valid unicode text (it contains a lone surrogate)")


def check_slug() -> None:
    slug = ANSWERS["project_slug"]
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise Refusal(
            "project_slug",
            "must be lowercase letters, digits and single hyphens, starting with a letter "
            "(e.g. 'orders-service')",
        )
    if len(slug) > MAX_NAME_LENGTH:
        raise Refusal("project_slug", f"must be at most {MAX_NAME_LENGTH} characters long")


def check_package_name() -> None:
    name = ANSWERS["package_name"]
    if not isinstance(name, str) or not PACKAGE_RE.fullmatch(name):
        raise Refusal(
            "package_name",
            "must be a lowercase Python identifier: letters, digits and underscores, "
            "not starting with a digit (e.g. 'orders_service')",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise Refusal("package_name", f"must be at most {MAX_NAME_LENGTH} characters long")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise Refusal("package_name", "is a Python keyword")
    if name in sys.stdlib_module_names:
        raise Refusal("package_name", "shadows a module of the Python standard library")
    if name in RESERVED_NAMES:
        raise Refusal("package_name", "is reserved by the project layout or by test discovery")


def check_email() -> None:
    email = ANSWERS["author_email"]
    if not isinstance(email, str) or not EMAIL_RE.fullmatch(email):
        raise Refusal("author_email", "must be an e-mail address such as 'team@example.com'")


def check_version() -> None:
    version = ANSWERS["version"]
    if not isinstance(version, str) or not PEP440_RE.fullmatch(version.strip()):
        raise Refusal("version", "must be a PEP 440 version such as '0.1.0' or '1.0.0rc1'")


def check_port() -> None:
    port = ANSWERS["http_port"]
    text = str(port).strip()
    if isinstance(port, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise Refusal("http_port", "must be a whole number from 1 to 65535")


def check_verify() -> None:
    verify = ANSWERS["verify"]
    if isinstance(verify, bool):
        return
    if str(verify).strip().lower() not in TRUE_WORDS | FALSE_WORDS:
        raise Refusal("verify", "must be true or false (yes/no)")


def main() -> int:
    checks = [
        lambda: check_text("project_name"),
        lambda: check_text("description"),
        lambda: check_text("author_name"),
        check_slug,
        check_package_name,
        check_email,
        check_version,
        check_port,
        check_verify,
    ]
    errors = []
    for check in checks:
        try:
            check()
        except Refusal as refusal:
            errors.append(str(refusal))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
