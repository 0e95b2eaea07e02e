"""The core library stands alone (design brief §5): vault/ imports nothing from the node service
or the CLI, so a recipient's or reporter's tool can be built on vault/ alone."""

from __future__ import annotations

import ast
from pathlib import Path

VAULT = Path(__file__).resolve().parents[2] / "vault"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_vault_imports_neither_the_node_nor_the_cli() -> None:
    bad = {
        f"{p.relative_to(VAULT.parent)}: {name}"
        for p in VAULT.rglob("*.py")
        for name in _imports(p)
        if name.split(".")[0] in ("escrow_node", "cli")
    }
    assert not bad, sorted(bad)


def test_the_scan_sees_the_protocol_client() -> None:
    # Guards the test above against passing on an empty tree.
    assert "vault.nodeproto.auth" in _imports(VAULT / "nodeproto" / "client.py") or (
        "vault.encoding" in _imports(VAULT / "nodeproto" / "client.py")
    )
