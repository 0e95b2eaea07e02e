"""What a reporter, an outlet and a node operator read under `--lang es` (issue 12, "Spanish and
local time"): the deposit summary, the snapshot list, the recovery report and the node operator's
commands are in Mexican Spanish, with times in the local zone, never a bare UTC ISO string.

In process, through the real `velador` entry point (cli.main.main, which reads --lang before
click parses). The outlet's inbox in Spanish is in tests/outlet/test_inbox_editor.py (real nodes).
"""

from __future__ import annotations

import re
import time

import pytest

from cli import i18n
from tests.cli.test_cli import OPW, share_subset, v, world  # noqa: F401 - fixtures

LOCAL = re.compile(r"\b\d{1,2} (ene|feb|mar|abr|may|jun|jul|ago|sep|oct|nov|dic)\b.* \d\d:\d\d CST")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(autouse=True)
def mexico_city(monkeypatch):
    """The reader is in Mexico City; the process goes back to English and its zone afterwards."""
    monkeypatch.setenv("TZ", "America/Mexico_City")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()
    i18n.setup("en")


def test_deposit_summary_and_snapshots_in_spanish(v, world):  # noqa: F811
    # Given a case, When the reporter deposits under --lang es
    code, _out, err = v(world.r, "--lang", "es", "deposit", "inv", world.data)
    # Then the summary is one Spanish sentence with plurals and the bar's units
    assert code == 0, err
    assert re.fullmatch(
        r"Instantánea 1 \(\w{12}\): 3 archivos, [\d.]+ KiB; se leyeron [\d.]+ KiB y se subieron "
        r"[\d.]+ KiB \(\d+ bloques nuevos\) a 2 almacenes\.\n",
        err,
    ), err
    # And depositing again says nothing changed, in Spanish
    code, _out, err = v(world.r, "--lang", "es", "deposit", "inv", world.data)
    assert err == "Nada cambió desde la instantánea 1; no se subió nada.\n", err
    # And the snapshot list has Spanish headers and the local time with its zone, not UTC
    out = v.ok(world.r, "--lang", "es", "snapshots", "inv")
    assert "creada" in out and "archivos" in out and "tamaño" in out
    assert LOCAL.search(out), out
    assert not ISO_UTC.search(out) and "UTC" not in out
    # And --json keeps the machine's UTC form
    assert ISO_UTC.fullmatch(v.json(world.r, "snapshots", "inv")[0]["created"])


def test_recovery_report_in_spanish(v, world):  # noqa: F811
    v.ok(world.r, "deposit", "inv", world.data)
    shares = share_subset(world, 2, "two")
    # When the outlet recovers with offline shares under --lang es
    code, out, err = v(
        world.o, "--lang", "es", "recover", "--shares", shares, "--out", world.tmp / "out",
        passphrase=OPW,
    )  # fmt: skip
    # Then the report is in Spanish, with the snapshot times local
    assert code == 0, err
    assert "Se recuperaron 3 archivos (" in out
    assert "Firmado por Rita Reporter (" in out and "[bold]" not in out
    assert "No está en tus contactos" in out
    assert re.search(r"^1 instantánea, del .* al .*; cadena íntegra\.$", out, re.M), out
    assert LOCAL.search(out) and not ISO_UTC.search(out), out
    assert "Fragmentos usados: 2; omitidos: 0." in out
    assert "Recovered" not in out and "Signed by" not in out


def test_verify_summary_in_spanish(v, world):  # noqa: F811
    v.ok(world.r, "deposit", "inv", world.data)
    code, _out, err = v(world.r, "--lang", "es", "verify", "inv")
    assert code == 0
    assert err == "Bien: 2 almacenes tienen los 3 objetos (1 instantánea).\n", err


def test_node_operator_commands_in_spanish(v, tmp_path):  # noqa: F811
    data = tmp_path / "nodo"
    url = "http://127.0.0.1:8799"
    # When an operator sets up a node and invites a reporter under --lang es
    out = v.ok(
        tmp_path, "--lang", "es", "node", "init", "--data", data, "--name", "n", "--url", url
    )
    assert f"identidad del nodo creada en {data}" in out and "huella: " in out
    code, _code, err = v(tmp_path, "--lang", "es", "node", "invite", "--data", data)
    assert code == 0, err
    # Then the invitation's expiry is a local time, in Spanish
    assert err.startswith("invitación de un solo uso "), err
    assert LOCAL.search(err) and not ISO_UTC.search(err), err
    out = v.ok(tmp_path, "--lang", "es", "node", "access", "--data", data)
    assert "registro: cerrado" in out and "llaves admitidas: 0" in out and "invitaciones: 1" in out
    assert "válida hasta el " in out and LOCAL.search(out) and not ISO_UTC.search(out), out
