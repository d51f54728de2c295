"""Jinja filters for the template (loaded by cookiecutter and cruft through ``_extensions``)."""

import json

from cookiecutter.utils import simple_filter

# Characters that TOML basic strings, YAML double-quoted scalars and Python string
# literals do not all accept raw: DEL, C1 controls, line/paragraph separators, BOM
# and the non-characters.  json.dumps already escapes U+0000..U+001F.
_ESCAPE_ALWAYS = {0x7F, 0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF} | set(range(0x80, 0xA0))


@simple_filter
def quoted(value: object) -> str:
    """Quote a free-text answer as one double-quoted string literal.

    The result is valid at once in TOML, YAML and Python, keeps readable unicode
    as it is (``tojson`` would write emoji as surrogate pairs, which TOML refuses),
    and can never close the literal it sits in.
    """
    text = json.dumps(str(value), ensure_ascii=False)
    return "".join(f"\\u{ord(ch):04x}" if ord(ch) in _ESCAPE_ALWAYS else ch for ch in text)
