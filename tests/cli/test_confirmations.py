"""Confirmations (issue 12 §9): answering no is a choice, not an error.

`release now` and `case destroy` ask at a terminal; "n" prints a calm line and exits 0, and
nothing is sent. (`release request`, which talks to nodes, is tested in tests/outlet.)
"""

from __future__ import annotations

import io

import pytest

from .test_cli import Velador
from .test_cli import world as world  # the fixture, shared


class Terminal(io.StringIO):
    """Standard input that says it is a terminal, with the person's answers in it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def v(capsys):
    return Velador(capsys)


@pytest.mark.parametrize(
    "args",
    [("release", "now", "inv"), ("case", "destroy", "inv")],
    ids=["release-now", "case-destroy"],
)
def test_answering_no_is_not_an_error(v, world, monkeypatch, args):
    # Given a person at a terminal who answers "n"
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = v(world.r, *args)
    # Then the exit status is 0 and the message is calm: nothing was sent
    assert code == 0, err
    assert "error" not in err
    assert err.rstrip().endswith("[y/N]: Nothing was sent; nothing changed.")
    # And the case is untouched
    assert v.json(world.r, "case", "show", "inv")["status"] == "active"


def test_without_a_terminal_yes_is_required(v, world, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = v(world.r, "release", "now", "inv")
    assert code == 75
    assert err.splitlines() == [
        "velador: error: refusing to release inv to your recipients now without confirmation",
        "velador: hint: add --yes",
    ]


def test_messages_use_no_internal_words(v, world):
    """Jargon (issue 12 §9): people keep share files, nobody is a "share holder"."""
    from .test_cli import OPW, share_subset

    v.ok(world.r, "deposit", "inv", world.data)
    shares = share_subset(world, 1, "one")
    code, _, err = v(
        world.o, "recover", "--shares", shares, "--out", world.tmp / "o", passphrase=OPW
    )
    assert code == 66
    assert err.splitlines()[-1] == (
        "velador: hint: more escrow nodes must release the case, or add offline share files "
        "with --shares"
    )
    assert "holder" not in err and "envelope" not in err
    top = v(world.r, "--help")[1]
    assert "share holders" not in top
