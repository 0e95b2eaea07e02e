"""End-to-end fixtures for the reporter side of the switch: real `velador node serve` processes
(from tests/node/conftest.py), the `velador` CLI run in process through its real error handler,
with the CLI's clock tied to the nodes' shared test clock so deadlines move when the test says.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import cli.main
from cli.context import Ctx
from cli.main import main
from tests.node import conftest as node_fixtures
from tests.node.conftest import SharedClock, wait_for

# The node fixtures, shared rather than copied: real node processes, their test clock, the SMTP
# and webhook receivers.
clock = node_fixtures.clock
_node_processes = node_fixtures.nodes
smtp = node_fixtures.smtp
webhooks = node_fixtures.webhooks
__all__ = ["SharedClock", "clock", "smtp", "wait_for", "webhooks"]


@pytest.fixture
def nodes(_node_processes):
    """tests/node's node factory, with a patient stop: on a loaded machine a node may take more
    than the 20 s its own teardown allows to exit, and a Popen dropped before the process is
    reaped fails the NEXT test with a ResourceWarning."""
    made = []

    def make(*args: Any, **kwargs: Any) -> Any:
        node = _node_processes(*args, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        proc = node.proc
        if proc is None:
            continue
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        node.proc = None


PW = "reporter passphrase"
DURESS = "duress passphrase"
OPW = "outlet passphrase"
EPW = "editor passphrase"
DAY = 86400


class Velador:
    """Run `velador` in process; returns (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, home: Path, *args: Any, passphrase: str | None = PW) -> tuple[int, str, str]:
        self.capsys.readouterr()
        old = os.environ.pop("VELADOR_PASSPHRASE", None)
        if passphrase is not None:
            os.environ["VELADOR_PASSPHRASE"] = passphrase
        try:
            main(["--home", str(home), *map(str, args)])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.environ.pop("VELADOR_PASSPHRASE", None)
            if old is not None:
                os.environ["VELADOR_PASSPHRASE"] = old
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, home: Path, *args: Any, passphrase: str | None = PW) -> str:
        code, out, err = self(home, *args, passphrase=passphrase)
        assert code == 0, err
        return out

    def json(self, home: Path, *args: Any, passphrase: str | None = PW) -> Any:
        return json.loads(self.ok(home, *args, "--json", passphrase=passphrase))

    def fails(
        self, home: Path, *args: Any, code: int, passphrase: str | None = PW
    ) -> tuple[str, str]:
        """Assert the exit code; return (first stderr line, hint line or '')."""
        got, out, err = self(home, *args, passphrase=passphrase)
        assert got == code, (got, out, err)
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if ln.startswith("velador: ")]
        hint = next((ln for ln in lines if ln.startswith("velador: hint: ")), "")
        return lines[0], hint


@pytest.fixture
def v(capsys, clock, monkeypatch):
    """The CLI with its clock set to the nodes' shared test clock."""
    monkeypatch.setattr(cli.main, "Ctx", lambda **kw: Ctx(clock=clock, **kw))
    return Velador(capsys)


@pytest.fixture
def people(v, homes):
    """A reporter (with a duress passphrase), two recipient outlets and two editors."""
    p = SimpleNamespace(r=homes("reporter"))
    v.ok(p.r, "id", "new", "--name", "Rita Reporter")
    os.environ["VELADOR_DURESS_PASSPHRASE"] = DURESS
    try:
        v.ok(p.r, "id", "duress")
    finally:
        del os.environ["VELADOR_DURESS_PASSPHRASE"]
    p.outlets = []
    for name in ("sur", "norte"):
        h = homes(name)
        v.ok(h, "id", "new", "--name", f"Diario {name}", "--role", "outlet", passphrase=OPW)
        v.ok(p.r, "contact", "add", v.ok(h, "id", "card", passphrase=OPW).strip(), "--alias", name)
        p.outlets.append(h)
    p.editors = []
    for name in ("ed1", "ed2"):
        h = homes(name)
        v.ok(h, "id", "new", "--name", f"Editor {name}", "--role", "editor", passphrase=EPW)
        v.ok(p.r, "contact", "add", v.ok(h, "id", "card", passphrase=EPW).strip(), "--alias", name)
        p.editors.append(h)
    return p


@pytest.fixture
def net(v, people, nodes):
    """Three real nodes added to the reporter's contacts from `velador node card` output."""

    def make(n: int = 3) -> list[Any]:
        made = []
        for i in range(n):
            node = nodes(f"node-{chr(97 + i)}")
            card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
            v.ok(people.r, "contact", "add", card, "--alias", f"n{i + 1}")
            made.append(node)
        return made

    return make


def create_args(n_nodes: int, tmp: Path, *extra: Any) -> list[Any]:
    args: list[Any] = ["case", "create", "inv"]
    for i in range(n_nodes):
        args += ["--node", f"n{i + 1}"]
    args += ["--threshold", "2", "--recipient", "sur", "--recipient", "norte"]
    args += ["--every", "3d", "--grace", "1d", "--remind", "12h,2h"]
    args += ["--store", f"file://{tmp / 'storeA'}", "--store", f"file://{tmp / 'storeB'}"]
    return args + list(extra)


@pytest.fixture
def armed(v, people, net, tmp_path):
    """A 2-of-3 case `inv` armed at three real nodes, with two editors (quorum 2, window 12h)."""
    ns = net(3)
    info = v.json(
        people.r,
        *create_args(
            3, tmp_path, "--editor", "ed1", "--editor", "ed2", "--objection-window", "12h"
        ),
    )
    assert info["armed"] is True
    return SimpleNamespace(nodes=ns, case_id=info["case_id"], info=info, **vars(people))


@pytest.fixture
def mexico_time(monkeypatch):
    """Views print local time (cli/timefmt.py): run them in Mexico City's zone (CST, UTC-6, no
    daylight saving time since 2022), whatever the machine's zone."""
    import time

    monkeypatch.setenv("TZ", "America/Mexico_City")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
