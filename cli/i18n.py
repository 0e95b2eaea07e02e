"""Messages in the reader's language: Mexican Spanish or English (gettext catalogs).

Where the catalogs live: cli/locale/velador.pot (the template, extracted from vault/ and cli/
with Babel: `make catalogs`) and cli/locale/es_MX/LC_MESSAGES/velador.po (the Spanish text,
written by people, as a newsroom would say it). English is the source language. The compiled
`.mo` is made by `make catalogs` and by `make` on set-up; if it is missing or older than the
`.po`, the `.po` is compiled in memory at start-up, so a fresh checkout always speaks Spanish.

Which language (first match wins): `--lang`, VELADOR_LANG, then the usual gettext variables
LANGUAGE (a colon-separated list), LC_ALL, LC_MESSAGES, LANG. Values such as `es_MX.UTF-8`,
`es`, `es_ES` choose Spanish; `en...`, `C` and `POSIX` choose English. Nothing set: English.

Rules for who writes messages (style guide, "Messages in two languages"): a whole sentence with
named placeholders (`%(case)s`), never sentences glued from translated pieces; plurals with
`ngettext`; library errors are marked with `N_` where they are raised (vault/errors.py) and
translated here, where they are shown (`error_text`; `note_text` for the Notes of an audit report,
vault/custody.py). Logs and --json stay in English. Help pages and click's own words (usage
errors) go through the same catalog: cli/helptext.py.
"""

from __future__ import annotations

import gettext
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vault.errors import VeladorError

DOMAIN = "velador"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SUPPORTED = {"es": "es_MX", "en": "en"}
"""Language code -> catalog folder. English needs none: it is the source text."""

_translations: gettext.NullTranslations = gettext.NullTranslations()
_lang = "en"


def pick_language(
    explicit: str | None = None, environ: dict[str, str] | None = None, default: str = "en"
) -> str:
    """'es' or 'en', from an explicit choice or the environment (see the module docstring);
    `default` when none of them names a language (`velador ui` is Spanish first)."""
    env = os.environ if environ is None else environ
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    if env.get("VELADOR_LANG"):
        candidates.append(env["VELADOR_LANG"])
    if env.get("LANGUAGE"):
        candidates += [c for c in env["LANGUAGE"].split(":") if c]
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(var):
            candidates.append(env[var])
            break  # gettext reads only the first of these that is set
    for value in candidates:
        code = value.split(".")[0].split("@")[0].split("_")[0].split("-")[0].lower()
        if code in SUPPORTED:
            return code
        if code in ("c", "posix"):
            return "en"
    return default


def _load(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    folder = LOCALE_DIR / SUPPORTED[lang] / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with open(mo, "rb") as fh:
            return gettext.GNUTranslations(fh)
    if not po.exists():
        return gettext.NullTranslations()
    # A fresh checkout without `make catalogs`: compile in memory (tens of milliseconds).
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(po, "rb") as fh:
        catalog = read_po(fh, locale=SUPPORTED[lang])
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def setup(explicit: str | None = None, environ: dict[str, str] | None = None) -> str:
    """Choose the language for this process; returns 'es' or 'en'."""
    global _translations, _lang
    from vault import passphrase

    _lang = pick_language(explicit, environ)
    _translations = _load(_lang)
    passphrase.set_language(_lang)  # passphrase suggestions in the same language (--lang too)
    return _lang


def language() -> str:
    return _lang


def _(message: str) -> str:
    """The message in the chosen language (the English text when it has no translation)."""
    return _translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translations.ngettext(singular, plural, n)


def note_text(note: object) -> str:
    """A Note (vault/custody.py: an English string that keeps its template and values), or
    anything else, in the chosen language; values that are Notes, or lists of them, too."""
    template = getattr(note, "template", None)
    params = getattr(note, "params", None)
    if not isinstance(template, str) or not isinstance(params, dict):
        return str(note)

    def local(value: object) -> object:
        if isinstance(value, list):
            return "; ".join(note_text(v) for v in value)
        return note_text(value) if hasattr(value, "template") else value

    try:
        text = _(template)
        return text % {k: local(v) for k, v in params.items()} if params else text
    except (KeyError, ValueError, TypeError):  # a translation whose placeholders differ
        return str(note)


def error_text(exc: VeladorError) -> tuple[str, str | None]:
    """An error's message and hint in the chosen language, with its values filled in."""
    params = dict(getattr(exc, "params", {}) or {})
    for key, value in params.items():
        if isinstance(value, Exception) and hasattr(value, "template"):
            params[key] = error_text(value)[0]  # an error quoted inside another: translate it too
        elif hasattr(value, "template") and hasattr(value, "params"):
            params[key] = note_text(value)  # a value vault/ said as a Note (a role, a reason)

    def fill(template: str | None, english: str | None) -> str | None:
        if template is None:
            return None
        try:
            return _(template) % params if params else _(template)
        except (KeyError, ValueError, TypeError):  # a translation whose placeholders differ
            return english

    message = fill(getattr(exc, "template", exc.message), exc.message) or exc.message
    return message, fill(getattr(exc, "hint_template", exc.hint), exc.hint)
