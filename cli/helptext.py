"""Help pages and usage errors in the reader's language (issue 12, "Spanish and local time").

The contract every command module follows: the help of every command, group, option and
argument is written `help=N_("...")` (N_ from vault.errors): one string literal (adjacent
literals are fine), never a docstring used as help, so that `make catalogs` extracts it and the
text click stores is exactly the catalog's msgid. Nothing else is asked of those modules.

Two halves make a help page wholly Spanish:

1. Velador's own help texts. The `velador` group (cli/main.py) gives every command it loads,
   and everything under it, `HelpContext` as its context class (`adopt`). A help page is
   rendered by `HelpContext.get_help()` (the `--help` option, and a group called with no
   subcommand), which, for the time of the rendering only, replaces each help text that page
   shows with `_()` of itself: the command's own help and epilog, its parameters' help (click's
   --help and --version options included), and the help or short help of a group's
   subcommands. The English text is put back afterwards: the command objects are shared module
   globals, and one process (the test suite) may render both languages.
2. click's own words ("Usage:", "Options", "Error: ...", "No such option ...", "Missing
   argument"). click looks them up through `gettext.gettext`, bound as `_` (and `ngettext`) in
   each of its modules; `install()` points those names at cli/i18n.py, so that they are found in
   Velador's catalog, where CLICK_MESSAGES lists them for extraction. click.decorators is left
   alone: it translates only when an option is made (import time), and its --help text is
   translated by half 1 instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from vault.errors import N_

from . import i18n
from .i18n import ngettext

_TEXTS = ("help", "short_help", "epilog", "options_metavar", "subcommand_metavar")
"""The attributes of a click Command or Parameter that hold a text a help page shows."""

METAVARS = (
    N_("[OPTIONS]"),
    N_("COMMAND [ARGS]..."),
    N_("[COMMAND] [ARGS]..."),
)
"""click's placeholders in usage lines (Command.options_metavar, Group.subcommand_metavar)."""

TYPE_METAVARS = {
    "text": N_("TEXT"),
    "integer": N_("INTEGER"),
    "integer range": N_("INTEGER RANGE"),
    "float": N_("FLOAT"),
    "float range": N_("FLOAT RANGE"),
    "boolean": N_("BOOLEAN"),
    "file": N_("FILE"),
    "filename": N_("FILE"),
    "directory": N_("DIRECTORY"),
    "path": N_("PATH"),
}
"""click type name -> the placeholder click shows for an option of that type without a metavar.
An argument's placeholder (CASE, NAME) is its own name, kept as written: help texts and error
messages name it the same way in both languages."""

CLICK_MESSAGES = (
    N_("Usage:"),
    N_("Options"),
    N_("Commands"),
    N_("Positional arguments"),
    N_("Show this message and exit."),
    N_("Show the version and exit."),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Invalid value: {message}"),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing {param_type}"),
    N_("Missing parameter: {param_name}"),
    N_("Missing command."),
    N_("No such option {name!r}."),
    N_("No such command {name!r}."),
    N_("Option {name!r} does not take a value."),
    N_("Argument {name!r} takes {nargs} values."),
    N_("Choose from:\n\t{choices}"),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."),
    N_("{value!r} is not a valid boolean. Recognized values: {states}"),
    N_("file"),
    N_("directory"),
    N_("path"),
    N_("{name} {filename!r} does not exist."),
    N_("{name} {filename!r} is a file."),
    N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is not readable."),
    N_("{name} {filename!r} is not writable."),
    N_("default: {default}"),
    N_("env var: {var}"),
    N_("required"),
    N_("Repeat for confirmation"),
    N_("Error: The two entered values do not match."),
    N_("Error: invalid input"),
    N_("Aborted!"),
)
"""The messages of click (8.x) a Velador user can meet, written exactly as click writes them.
click fills `{name}` fields with str.format: translations keep every field."""


def _click_plurals(n: int) -> tuple[str, ...]:
    """Never called: lists click's plural messages so that `make catalogs` extracts them."""
    return (
        ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", n),
        ngettext(
            "Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", n
        ),
        ngettext(
            "Option {name!r} requires an argument.",
            "Option {name!r} requires {nargs} arguments.",
            n,
        ),
        ngettext("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", n),
        ngettext(
            "Takes {nargs} values but 1 was given.", "Takes {nargs} values but {len} were given.", n
        ),
    )


_CLICK_MODULES = ("core", "exceptions", "parser", "types", "formatting", "termui")


def install() -> None:
    """Make click look its own messages up in Velador's catalog (half 2 of the docstring)."""
    import importlib

    for name in _CLICK_MODULES:
        module = importlib.import_module(f"click.{name}")
        if hasattr(module, "_"):
            module._ = i18n._  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = i18n.ngettext  # type: ignore[attr-defined]


@contextmanager
def translated(ctx: click.Context, subcommands: bool = True) -> Iterator[None]:
    """Every help text the help page of `ctx` shows, in the chosen language, until the end of
    the `with` block; then the English source again. `subcommands`: also the short help of a
    group's subcommands (a usage line does not show them)."""
    cmd = ctx.command
    shown: list[Any] = [cmd, *cmd.get_params(ctx)]
    if subcommands and isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                shown.append(sub)
    saved: list[tuple[Any, str, str | None]] = []
    try:
        for obj in shown:
            for attr in _TEXTS:
                text = getattr(obj, attr, None)
                if isinstance(text, str) and text:
                    saved.append((obj, attr, text))
                    setattr(obj, attr, i18n._(text))
            if metavar := _type_metavar(obj, ctx):
                saved.append((obj, "metavar", None))
                obj.metavar = metavar
        yield
    finally:
        for obj, attr, text in reversed(saved):
            setattr(obj, attr, text)


def _type_metavar(obj: Any, ctx: click.Context) -> str | None:
    """The translated placeholder of an option shown by its type's name ("--home DIRECTORY")."""
    if not isinstance(obj, click.Option) or obj.metavar is not None or obj.is_flag or obj.count:
        return None
    if obj.type.get_metavar(param=obj, ctx=ctx) is not None:
        return None  # a choice ([alert|release]) or a format: shown as the values themselves
    english = TYPE_METAVARS.get(obj.type.name)
    if english is None:
        return None
    return i18n._(english) + ("..." if obj.nargs != 1 else "")


class HelpContext(click.Context):
    """A click context whose help page and usage line are in the chosen language (half 1 of
    the docstring; the usage line is also what a usage error shows)."""

    def get_help(self) -> str:
        with translated(self):
            return super().get_help()

    def get_usage(self) -> str:
        with translated(self, subcommands=False):
            return super().get_usage()


def adopt(cmd: click.Command) -> click.Command:
    """Give `cmd` and every command under it HelpContext; returns `cmd`.

    Language-neutral and idempotent: it may run each time a command is looked up."""
    stack = [cmd]
    while stack:
        c = stack.pop()
        if not issubclass(c.context_class, HelpContext):
            c.context_class = HelpContext
        if isinstance(c, click.Group):
            stack.extend(c.commands.values())
    return cmd


def _root_lang(params: list[click.Parameter], args: list[str]) -> str | None:
    """The value of the group's --lang among its own options in `args` (before the
    subcommand), without click: help may be rendered before --lang is processed."""
    takes_value = {
        opt
        for p in params
        if isinstance(p, click.Option) and not p.is_flag and not p.count
        for opt in p.opts
    }
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-"):
            return None  # the subcommand (or an argument): the group's options have ended
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
        if arg == "--lang":
            return args[i + 1] if i + 1 < len(args) else None
        i += 2 if arg in takes_value else 1
    return None


def choose_language(group: click.Command, args: list[str]) -> str:
    """Set the language of this run from the group's --lang or the environment (cli/i18n.py),
    before click parses anything: `velador --help --lang es` renders help first."""
    return i18n.setup(_root_lang(group.params, args))
