"""Outlet and editor fixtures: an armed case on real `velador node serve` processes.

The reporter side is built with the library (vault.case.create_case + NodeClient.register_case),
its files are deposited with the real `velador deposit`, and the outlets, editor and outsider use
the real `velador` command in process, through its one error handler.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from tests.node.builders import PASS, person
from tests.node.conftest import RealNode, SharedClock, nodes, wait_for  # noqa: F401
from vault.case import create_case, register_locally
from vault.identity import Identity
from vault.nodeproto.client import NodeClient
from vault.policy import Policy, Switch
from vault.shares import ShareSpec
from vault.state import LocalState


class Velador:
    """`velador` in process through cli.main.main: (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, home: Path, *args: Any) -> tuple[int, str, str]:
        self.capsys.readouterr()
        old = os.environ.get("VELADOR_PASSPHRASE")
        os.environ["VELADOR_PASSPHRASE"] = PASS
        try:
            main(["--home", str(home), *map(str, args)])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            if old is None:
                del os.environ["VELADOR_PASSPHRASE"]
            else:
                os.environ["VELADOR_PASSPHRASE"] = old
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, home: Path, *args: Any) -> tuple[str, str]:
        code, out, err = self(home, *args)
        assert code == 0, err
        return out, err


@pytest.fixture
def v(capsys):
    return Velador(capsys)


@pytest.fixture
def clock(tmp_path: Path) -> SharedClock:
    """The nodes' clock starts at the real time: the CLI signs requests with the system clock."""
    return SharedClock(tmp_path / "clock", start=int(time.time()))


@dataclass
class Case:
    reporter: Identity
    outlets: list[Identity]
    editor: Identity
    outsider: Identity
    homes: dict[str, Path]
    nodes: list[RealNode]
    policy: Policy
    envelopes: dict[str, list[dict[str, Any]]]
    source: Path
    usb: Path
    clients: list[NodeClient] = field(default_factory=list)

    @property
    def case_id(self) -> str:
        return self.policy.case_id

    def client(self, node: RealNode, who: Identity | None = None) -> NodeClient:
        c = NodeClient(node.card, who or self.reporter, node.clock, 10.0)
        self.clients.append(c)
        return c

    def register(self, node: RealNode) -> None:
        envs = [e for h in self.policy.holders_of(node.card.sign_pk) for e in self.envelopes[h.id]]
        self.client(node).register_case(self.policy, envs)

    def release(self, *which: RealNode) -> None:
        """The reporter releases at these nodes (`release now`), a real state change."""
        for node in which:
            self.client(node).release_now(self.case_id)
            node.wait_state(self.case_id, "RELEASED")

    def tamper(self, node: RealNode, edit) -> None:
        """Rewrite the envelopes a node stores, behind its back (a lying or broken node)."""
        import sqlite3

        conn = sqlite3.connect(node.dir / "node.db", timeout=10)
        try:
            rows = conn.execute(
                "SELECT holder, recipient, envelope FROM envelopes WHERE case_id = ?",
                (self.case_id,),
            ).fetchall()
            with conn:
                for holder, recipient, text in rows:
                    conn.execute(
                        "UPDATE envelopes SET envelope = ?"
                        " WHERE case_id = ? AND holder = ? AND recipient = ?",
                        (json.dumps(edit(json.loads(text))), self.case_id, holder, recipient),
                    )
        finally:
            conn.close()

    def add_nodes_as_contacts(self, v: Velador, home: Path, which: list[RealNode]) -> None:
        for node in which:
            v.ok(home, "contact", "add", node.card.text, "--alias", node.card.name)

    def close(self) -> None:
        for c in self.clients:
            c.close()


def sample_tree(root: Path) -> Path:
    src = root / "investigacion"
    (src / "fuentes").mkdir(parents=True)
    (src / "notas.md").write_text("# Puerto\nContratos inflados.\n", encoding="utf-8")
    (src / "fuentes" / "entrevista-ñ.txt").write_text("Testimonio.\n", encoding="utf-8")
    (src / "fuentes" / "datos.bin").write_bytes(os.urandom(200_000))
    return src


@pytest.fixture
def armed(tmp_path: Path, nodes, v):  # noqa: F811 - `nodes` is the imported fixture
    """Factory: an armed case, `threshold` of `n` real nodes, two outlets, one editor."""
    made: list[Case] = []

    def make(
        n: int = 3, threshold: int = 2, extra_cards: tuple = (), offline: int = 0, stores: int = 1
    ) -> Case:
        people = tmp_path / f"people{len(made)}"
        homes = {k: people / k for k in ("reporter", "outlet0", "outlet1", "editor", "outsider")}
        reporter = person(homes["reporter"], "Ana Reportera", "reporter")
        outlets = [person(homes[f"outlet{i}"], f"Outlet {i}", "outlet") for i in range(2)]
        editor = person(homes["editor"], "Editora", "editor")
        outsider = person(homes["outsider"], "Alguien", "editor")
        tag = f"-{len(made)}" if made else ""
        real = [nodes(f"node-{chr(97 + i)}{tag}") for i in range(n)]
        cards = [r.card for r in real] + list(extra_cards)
        state = LocalState(homes["reporter"])
        store_urls = [f"file://{people / f'store{i}'}" for i in range(stores)]
        new = create_case(
            state,
            reporter,
            "puerto",
            [o.card for o in outlets],
            ShareSpec(1, ((threshold, len(cards) + offline),)),
            store_urls,
            real[0].clock,
            nodes=cards,
            offline_dir=people / "usb" if offline else None,
            switch=Switch(
                every=3600,
                grace=600,
                remind=(900,),
                editors=(editor.card,),
                editor_quorum=1,
                objection_window=600,
            ),
        )
        register_locally(state, reporter, "puerto", new, {})
        src = sample_tree(people)
        note = people / "instrucciones.txt"
        note.write_text("Publicar notas.md primero.\n", encoding="utf-8")
        v.ok(homes["reporter"], "deposit", "puerto", src, "--instructions", note)
        case = Case(
            reporter,
            outlets,
            editor,
            outsider,
            homes,
            real,
            new.policy,
            new.envelopes,
            src,
            people / "usb",
        )
        for node in real:
            case.register(node)
        made.append(case)
        return case

    yield make
    for c in made:
        c.close()


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    if files_a != files_b:
        return False
    return all((a / p).read_bytes() == (b / p).read_bytes() for p in files_a if (a / p).is_file())


__all__ = ["Case", "same_tree", "wait_for"]
