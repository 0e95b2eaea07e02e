"""`velador audit`: custody proofs from real nodes and a presence check of every store."""

from __future__ import annotations

import json
import sqlite3

import pytest


@pytest.fixture
def deposited(v, armed, tmp_path):
    data = tmp_path / "data" / "puerto"
    data.mkdir(parents=True)
    (data / "notas.md").write_text("contratos inflados\n")
    (data / "anexo.bin").write_bytes(bytes(range(256)) * 2000)
    v.ok(armed.r, "deposit", "inv", data)
    armed.stores = [tmp_path / "storeA", tmp_path / "storeB"]
    return armed


def objects_in(store):
    return sorted(p for p in store.rglob("*") if p.is_file() and "/objects/" in str(p))


def tamper(node, case_id, sql, *args):
    conn = sqlite3.connect(node.dir / "node.db", timeout=10)
    try:
        with conn:
            conn.execute(sql, args)
    finally:
        conn.close()


def test_audit_yes(v, deposited):
    rep = v.json(deposited.r, "audit", "inv")
    assert rep["recoverable"] is True
    assert rep["reasons"] == [] and rep["warnings"] == []
    assert [n["ok"] for n in rep["nodes"]] == [True] * 3
    assert [s["n_missing"] for s in rep["stores"]] == [0, 0]
    out = v.ok(deposited.r, "audit", "inv")
    assert "yes: if you went silent now, your recipients could recover everything" in out


def test_audit_store_replica_missing_then_lost(v, deposited):
    a, b = deposited.stores
    victim = objects_in(a)[0]
    key = str(victim.relative_to(a))
    victim.unlink()
    # One replica lacks it: still yes, with a warning naming the store and the object.
    rep = v.json(deposited.r, "audit", "inv")
    assert rep["recoverable"] is True
    assert rep["warnings"] == [f"store file://{a} misses 1 object(s), e.g. {key}"]
    # Both lack it: no, exit 3, and the one line says what is lost where.
    (b / key).unlink()
    line, hint = v.fails(deposited.r, "audit", "inv", code=3)
    assert line == (
        f"velador: error: no: your recipients could not recover everything: 1 object(s) are in "
        f"no store (e.g. {key}): store file://{a} misses 1 object(s), e.g. {key}; "
        f"store file://{b} misses 1 object(s), e.g. {key}"
    )
    assert hint == (
        "velador: hint: run 'velador verify inv --repair' (it copies good replicas, and names "
        "what only a new deposit can restore)"
    )


def test_audit_lying_and_silent_nodes(v, deposited):
    case_id = deposited.case_id
    node_a, node_b, _ = deposited.nodes
    # node-a alters one of its envelopes: its custody proof no longer matches.
    row = node_a.query(
        "SELECT holder, recipient, envelope FROM envelopes WHERE case_id = ?", case_id
    )[0]
    env = json.loads(row["envelope"])
    env["sig"] = env["sig"][:-4] + ("AAAA" if not env["sig"].endswith("AAAA") else "BBBB")
    tamper(
        node_a,
        case_id,
        "UPDATE envelopes SET envelope = ? WHERE case_id = ? AND holder = ? AND recipient = ?",
        json.dumps(env),
        case_id,
        row["holder"],
        row["recipient"],
    )
    rep = v.json(deposited.r, "audit", "inv")
    assert rep["recoverable"] is True  # two of three are enough for 2 of 3
    assert rep["warnings"] == ["node node-a does not hold its 2 envelope(s) intact (it holds 2)"]
    # node-b goes silent: one healthy node is not enough.
    node_b.kill()
    line, _ = v.fails(deposited.r, "audit", "inv", code=3)
    assert line.startswith(
        "velador: error: no: your recipients could not recover everything: only 1 of 3 nodes "
        "hold their shares intact and live; the split is 2 of 3: node node-a does not hold its "
        "2 envelope(s) intact (it holds 2); node node-b did not answer (node node-b is unreachable"
    )


def test_audit_node_deleted_envelopes(v, deposited):
    case_id = deposited.case_id
    for node in deposited.nodes[:2]:
        row = node.query("SELECT holder, recipient FROM envelopes WHERE case_id = ?", case_id)[0]
        tamper(
            node,
            case_id,
            "DELETE FROM envelopes WHERE case_id = ? AND holder = ? AND recipient = ?",
            case_id,
            row["holder"],
            row["recipient"],
        )
    line, _ = v.fails(deposited.r, "audit", "inv", code=3)
    assert "node node-a does not hold its 2 envelope(s) intact (it holds 1)" in line
    assert "node node-b does not hold its 2 envelope(s) intact (it holds 1)" in line


def test_audit_empty_case_is_not_yes(v, armed):
    # Given an armed case with nothing deposited, audit does not say "yes": the case holds
    # nothing yet, exit 3, and the hint says how to deposit.
    code, out, err = v(armed.r, "audit", "inv")
    assert code == 3, (out, err)
    assert "yes:" not in out
    assert (
        "velador: error: no: your recipients could not recover everything: the case holds "
        "nothing yet: no deposit has been made"
    ) in err
    assert "velador: hint: deposit your material: velador deposit inv PATH..." in err


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only a hash finds it
    path.write_bytes(bytes(data))


def test_audit_counts_damage_that_verify_deep_found(v, deposited):
    a, b = deposited.stores
    victim = objects_in(a)[0]
    key = str(victim.relative_to(a))
    flip_byte(victim)
    assert v.json(deposited.r, "audit", "inv")["recoverable"] is True  # sizes alone look fine
    code, _, err = v(deposited.r, "verify", "inv", "--deep", passphrase=None)
    assert code == 74 and f"damaged  file://{a}: {key}" in err
    # One replica damaged: still yes, but audit names it and points at the repair.
    rep = v.json(deposited.r, "audit", "inv")
    assert rep["recoverable"] is True
    assert rep["warnings"] == [
        f"store file://{a} misses 1 object(s), e.g. {key} (1 found damaged by 'velador verify "
        "--deep')"
    ]
    out = v.ok(deposited.r, "audit", "inv")
    assert "'velador verify inv --repair' copies good replicas where needed" in out
    # The other replica damaged too: audit now says no, where it said yes before.
    flip_byte(b / key)
    v(deposited.r, "verify", "inv", "--deep", passphrase=None)
    line, _ = v.fails(deposited.r, "audit", "inv", code=3)
    assert line.startswith("velador: error: no: your recipients could not recover everything: 1 ")
    assert "found damaged by 'velador verify --deep'" in line
