"""`velador ui` speaks the language the CLI would choose (cli/i18n.py), Spanish when nothing
names one (cli/ui/__init__.py ui_language)."""

from __future__ import annotations

import click
import pytest

from cli.ui import ui_language

LOCALE_VARS = ("VELADOR_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.mark.parametrize(
    ("root_lang", "ui_lang", "env", "want"),
    [
        (None, None, {}, "es"),  # nothing says: Spanish first
        (None, None, {"LANG": "de_DE.UTF-8"}, "es"),  # a language Velador does not speak
        (None, None, {"LANG": "en_US.UTF-8"}, "en"),  # the desktop's language, as the CLI
        (None, None, {"LANG": "es_MX.UTF-8"}, "es"),
        (None, None, {"LANGUAGE": "en", "LANG": "es_MX.UTF-8"}, "en"),
        (None, None, {"VELADOR_LANG": "en", "LANG": "es_MX.UTF-8"}, "en"),
        ("es", None, {"LANG": "en_US.UTF-8"}, "es"),  # velador --lang es ui
        (None, "es", {"LANG": "en_US.UTF-8"}, "es"),  # velador ui --lang es
        ("en", None, {"LANG": "es_MX.UTF-8"}, "en"),
    ],
)
def test_ui_language_is_the_clis_choice_spanish_first(monkeypatch, root_lang, ui_lang, env, want):
    for var in LOCALE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    root = click.Context(click.Command("velador"))
    root.params["lang"] = root_lang
    with root:
        assert ui_language(ui_lang) == want
