"""Help pages and usage errors in Spanish (cli/helptext.py), English left as it was.

In process, through cli.main.main (the real error handler), like tests/cli/test_cli.py: a help
page needs no home, no node and no passphrase.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from cli import helptext, i18n
from cli.main import cli, main

PO = Path(__file__).resolve().parents[2] / "cli" / "locale" / "es_MX" / "LC_MESSAGES" / "velador.po"
BRACES = re.compile(r"\{(\w+)")

ENGLISH_CLICK = ("Usage:", "Options:", "Commands:", "Show this message and exit.", "Try '")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def spanish_locale(monkeypatch):
    """A Mexican desktop: LANG only (tests/conftest.py sets VELADOR_LANG=en, taken away here)."""
    for var in ("VELADOR_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "es_MX.UTF-8")
    yield
    i18n.setup("en")


def test_case_help_with_lang_es_is_wholly_spanish(capsys):
    code, out, _err = run(capsys, "--lang", "es", "case", "--help")
    assert code == 0
    assert out.startswith("Uso: velador case [OPCIONES] COMANDO [ARGUMENTOS]...")
    assert "Casos: una investigación" in out
    assert "Opciones:" in out and "Comandos:" in out
    assert "-h, --help  Muestra esta ayuda y termina." in out
    assert "Lista tus casos." in out  # a subcommand's short help
    for english in (*ENGLISH_CLICK, "Cases: one investigation", "List your cases."):
        assert english not in out


def test_option_help_placeholders_and_defaults_in_spanish(capsys):
    code, out, _err = run(capsys, "--lang", "es", "case", "create", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "Uso: velador case create [OPCIONES] NAME" in flat
    assert "--threshold ENTERO Fragmentos necesarios para recuperar (K)." in flat
    assert "[si no dices otra cosa: alert]" in flat  # click's "[default: alert]"
    assert "[obligatoria]" in flat  # click's "[required]"
    assert "INTEGER" not in flat and "default:" not in flat and "required]" not in flat


def test_help_before_lang_on_the_command_line_is_spanish_too(capsys):
    # --help is eager: click renders it before it would process --lang.
    code, out, _err = run(capsys, "--help", "--lang", "es")
    assert code == 0
    assert "Un caso es una investigación" in out
    assert "--version  " in out and "Muestra la versión y termina." in out


def test_a_command_from_another_module_under_a_spanish_locale(capsys, spanish_locale):
    # `deposit` lives in cli/data_cmds.py and is imported lazily; its own help texts are marked
    # by that module, click's words come through this one.
    code, out, _err = run(capsys, "deposit", "--help")
    assert code == 0
    assert out.startswith("Uso: velador deposit [OPCIONES]")
    assert "Opciones:" in out and "Muestra esta ayuda y termina." in out
    for english in ENGLISH_CLICK:
        assert english not in out


def test_a_usage_error_in_spanish(capsys):
    code, out, err = run(capsys, "--lang", "es", "case", "show")
    assert code == 2
    assert out == ""
    assert "Uso: velador case show [OPCIONES] NAME" in err
    assert "Usa 'velador case show --help' para ver la ayuda." in err
    assert "Error: Falta el argumento 'NAME'." in err
    code, _out, err = run(capsys, "--lang", "es", "status", "--bogus")
    assert code == 2
    assert "Error: No existe la opción '--bogus'." in err
    code, _out, err = run(capsys, "--lang", "es", "checkin", "--timeout", "x")
    assert "Error: Valor no válido para '--timeout': 'x' no es un número válido." in err


def test_version_in_spanish(capsys, spanish_locale):
    code, out, _err = run(capsys, "--version")
    assert code == 0
    assert out.startswith("velador, versión ")


def test_english_is_unchanged_and_comes_back_after_spanish(capsys):
    run(capsys, "--lang", "es", "case", "--help")
    code, out, _err = run(capsys, "case", "--help")
    assert code == 0
    assert out.startswith("Usage: velador case [OPTIONS] COMMAND [ARGS]...")
    assert "Cases: one investigation, its recipients" in out
    assert "Options:" in out and "Show this message and exit." in out
    assert "List your cases." in out
    code, _out, err = run(capsys, "case", "show")
    assert code == 2
    assert "Try 'velador case show --help' for help." in err
    assert "Error: Missing argument 'NAME'." in err
    # The command objects keep their English source (the catalog's msgids).
    case = cli.get_command(click.Context(cli), "case")
    assert case is not None and case.help.startswith("Cases: one investigation")


# The contract (cli/helptext.py): every help text is a catalog msgid with a Spanish entry,
# for every command and option of `velador` (the node's included).


def _walk(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                yield from _walk(sub, (*path, name))


def _texts(path: tuple[str, ...], cmd: click.Command):
    where = " ".join(path) or "velador"
    yield where, cmd.help
    for p in cmd.params:
        if getattr(p, "help", None) and not getattr(p, "hidden", False):
            yield f"{where} {p.name}", p.help


def test_every_help_text_has_spanish():
    i18n.setup("es")
    try:
        untranslated = [
            (where, text)
            for path, cmd in _walk(cli)
            for where, text in _texts(path, cmd)
            if text and i18n._(text) == text
        ]
    finally:
        i18n.setup("en")
    assert untranslated == []


def test_click_messages_are_still_clicks_own():
    # A click upgrade that rewords a message would silently bring English back.
    folder = Path(click.__file__).parent
    theirs: set[str] = set()
    for name in ("core", "exceptions", "parser", "types", "formatting", "termui", "decorators"):
        for _line, msg, _c, _ctx in extract_from_file("python", str(folder / f"{name}.py")):
            theirs.update(msg if isinstance(msg, tuple) else (msg,))
    ours = set(helptext.CLICK_MESSAGES)
    for pair in helptext._click_plurals.__code__.co_consts:
        if isinstance(pair, str) and "{" in pair:
            ours.add(pair)
    # "required" reaches click's _() through a variable (Option.get_help_extra), so the
    # extractor cannot see it in click's source; it is checked by the --help test above.
    assert ours - theirs == {"required"}


def test_brace_fields_are_never_invented():
    # click fills {fields} with str.format: a field the English lacks would crash the message.
    # (Dropping one is allowed: "{value!r} is not a valid {number_type}" names click's type
    # name in English, the Spanish leaves it out.)
    with open(PO, "rb") as fh:
        cat = read_po(fh, locale="es_MX")
    bad = []
    for m in cat:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        allowed = {f for i in ids for f in BRACES.findall(i)}
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        bad += [(ids[0], s) for s in strings if s and not set(BRACES.findall(s)) <= allowed]
    assert bad == []
