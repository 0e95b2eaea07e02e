"""`velador recover CASE_CARD_OR_ID`: released envelopes from real node processes.

Every test starts real `velador node serve` processes on loopback; nothing of ours is mocked.
Lying nodes are made by rewriting a node's database behind its back, or by a stand-in HTTP
server at the URL of a node card the policy names.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.node.builders import person
from vault.encoding import b64e, canonical_json
from vault.policy import sign_policy
from vault.switch import CASE_CARD_PREFIX, make_case_card

from .conftest import same_tree


def recover(v, case, who: str, out: Path, *extra):
    return v(case.homes[who], "recover", case.case_id, "--out", out, "--timeout", "5", *extra)


def test_recover_after_release_writes_identical_files_and_names_everything(armed, v, tmp_path):
    # Given a 2-of-3 case released at every node, and an outlet that knows the nodes
    case = armed(n=3, threshold=2)
    case.release(*case.nodes)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    out = tmp_path / "recuperado"
    # When the outlet recovers by case id, exporting the key
    code, stdout, stderr = recover(v, case, "outlet0", out, "--export-key", tmp_path / "k.key")
    # Then the files are byte-identical, and instructions and provenance are printed
    assert code == 0, stderr
    assert same_tree(case.source, out / case.source.name)
    assert "Publicar notas.md primero." in stdout
    assert "Signed by Ana Reportera" in stdout
    for node in case.nodes:
        assert f"node {node.card.name}: released at" in stdout
    assert (tmp_path / "k.key").read_text().count("AGE-SECRET-KEY-1") == 1
    assert "warning" not in stderr


def test_recover_json_reports_each_node(armed, v, tmp_path):
    case = armed(n=3, threshold=2)
    case.release(*case.nodes[:2])
    case.add_nodes_as_contacts(v, case.homes["outlet1"], case.nodes)
    code, stdout, stderr = recover(v, case, "outlet1", tmp_path / "o", "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    outcomes = {n["node"]: n["outcome"] for n in doc["nodes"]}
    assert outcomes == {"node-a": "released", "node-b": "released", "node-c": "not released"}
    assert doc["files"] == 3 and doc["policy_hash"] == case.policy.hash
    assert stderr.strip() == (
        "velador: warning: skipped node node-c "
        "(not released: the case is not released (state ARMED))"
    )


def test_fewer_than_k_released_says_how_many_and_which_have_not(armed, v, tmp_path):
    # Given a 3-of-4 case released at two nodes only
    case = armed(n=4, threshold=3)
    case.release(*case.nodes[:2])
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    out = tmp_path / "o"
    code, _, stderr = recover(v, case, "outlet0", out)
    # Then one error line names the count and the nodes that have not released; nothing written
    assert code == 66
    lines = stderr.strip().splitlines()
    assert lines[-2] == (
        f"velador: error: only 2 of the 4 nodes of case {case.case_id} have released a valid "
        "share (3 of 4 needed); not yet: node-c (not released: the case is not released "
        "(state ARMED)), node-d (not released: the case is not released (state ARMED))"
    )
    assert lines[-1] == (
        "velador: hint: wait for more nodes to release ('velador inbox' shows their notices), "
        "or ask the case's editors for a release"
    )
    assert "Traceback" not in stderr
    assert not out.exists()


def test_a_node_that_is_down_is_named_and_skipped(armed, v, tmp_path):
    case = armed(n=3, threshold=2)
    case.release(*case.nodes)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    down = case.nodes[2]
    down.kill()
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 0, stderr
    assert stderr.strip() == (f"velador: warning: skipped node node-c (unreachable: {down.url})")
    assert same_tree(case.source, tmp_path / "o" / case.source.name)
    assert "node node-c: unreachable" in stdout


def test_too_many_nodes_down_is_a_clear_error(armed, v, tmp_path):
    case = armed(n=3, threshold=2)
    case.release(*case.nodes)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    for node in case.nodes[1:]:
        node.kill()
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 66
    b, c = case.nodes[1], case.nodes[2]
    assert stderr.strip().splitlines()[-2] == (
        f"velador: error: only 1 of the 3 nodes of case {case.case_id} have released a valid "
        f"share (2 of 3 needed); not yet: node-b (unreachable: {b.url}), "
        f"node-c (unreachable: {c.url})"
    )


def _flip_sealed(env):
    body = env["body"]
    s = body["sealed"]
    body["sealed"] = ("B" if s[0] != "B" else "C") + s[1:]
    return env


def test_a_node_serving_an_altered_envelope_is_named_and_skipped(armed, v, tmp_path):
    # Given a released 2-of-3 case where node-b's database was altered behind its back
    case = armed(n=3, threshold=2)
    case.release(*case.nodes)
    case.tamper(case.nodes[1], _flip_sealed)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    # When the outlet recovers
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    # Then node-b is named as lying and skipped, and the two honest nodes suffice
    assert code == 0, stderr
    assert stderr.strip() == (
        "velador: warning: skipped node node-b (lying: sent an invalid release "
        "(share envelope has an invalid signature))"
    )
    assert same_tree(case.source, tmp_path / "o" / case.source.name)


def test_an_altered_envelope_that_leaves_too_few_shares_is_named_in_the_error(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    case.tamper(case.nodes[0], _flip_sealed)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 66
    assert stderr.strip().splitlines()[-2] == (
        f"velador: error: only 1 of the 2 nodes of case {case.case_id} have released a valid "
        "share (2 of 2 needed); not yet: node-a (lying: sent an invalid release "
        "(share envelope has an invalid signature))"
    )


class StandIn:
    """A stand-in for a node, on loopback: serves whatever release document it is given."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.release: dict | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(outer.release or {"message": "not here"}).encode()
                self.send_response(200 if outer.release else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in():
    s = StandIn()
    yield s
    s.close()


def test_a_node_serving_an_envelope_of_another_policy_is_named(armed, v, tmp_path, stand_in):
    # Given a case whose third holder is a stand-in server, and a second, unrelated case
    liar = person(tmp_path / "liar", "node-liar", "node", stand_in.url)
    case = armed(n=2, threshold=2, extra_cards=(liar.card,))
    case.release(*case.nodes)
    mine = [e for h in case.policy.holders_of(liar.card.sign_pk) for e in case.envelopes[h.id]]
    other = armed(n=2, threshold=2, extra_cards=(liar.card,))
    foreign = [e for h in other.policy.holders_of(liar.card.sign_pk) for e in other.envelopes[h.id]]
    # The stand-in serves this case's policy with the envelopes of the other case's policy
    stand_in.release = {
        "case_id": case.case_id,
        "node": liar.fingerprint,
        "released_at": 1,
        "policy": case.policy.doc,
        "envelopes": foreign,
    }
    assert mine  # it does hold a share of this case, in the policy
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 0, stderr
    assert stderr.strip() == (
        "velador: warning: skipped node node-liar (lying: sent an invalid release "
        "(share envelope was signed by an unexpected key))"
    )


def test_a_stand_in_serving_a_policy_of_another_reporter_is_outvoted(armed, v, tmp_path, stand_in):
    liar = person(tmp_path / "liar", "node-liar", "node", stand_in.url)
    case = armed(n=2, threshold=2, extra_cards=(liar.card,))
    case.release(*case.nodes)
    # A forged case with the same id, signed by someone else, served by the stand-in
    forged = armed(n=1, threshold=2, extra_cards=(liar.card,))
    stand_in.release = {
        "case_id": case.case_id,
        "node": liar.fingerprint,
        "released_at": 1,
        "policy": forged.policy.doc,
        "envelopes": [],
    }
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 0, stderr
    assert "skipped node node-liar (lying: " in stderr


def test_unknown_case_id(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = v(case.homes["outlet0"], "recover", "0123456789abcdef", "--out", tmp_path)
    assert code == 66
    assert stderr.strip().splitlines() == [
        "velador: error: none of the 2 node(s) asked holds case 0123456789abcdef",
        "velador: hint: check the case id, or recover with the case card the reporter gave you; "
        "nodes answer the same way to a key that is not a recipient of the case (yours is "
        f"{case.outlets[0].fingerprint})",
    ]


def test_case_id_without_any_known_node(armed, v, tmp_path):
    case = armed(n=1, threshold=1)
    code, _, stderr = v(case.homes["outlet0"], "recover", case.case_id, "--out", tmp_path / "o")
    assert code == 66
    assert stderr.strip().splitlines()[0] == (
        f"velador: error: you know no escrow node to ask about case {case.case_id}"
    )


def test_malformed_case_card(armed, v, tmp_path):
    case = armed(n=1, threshold=1)
    code, _, stderr = v(
        case.homes["outlet0"], "recover", "velador:case:v1:AAAA!!", "--out", tmp_path / "o"
    )
    assert code == 65
    assert stderr.strip().splitlines() == [
        "velador: error: this case card is malformed",
        "velador: hint: ask the reporter to send the line from 'velador case card' again",
    ]


def test_recover_with_the_case_card_needs_no_node_contacts(armed, v, tmp_path):
    # Given the case card from the reporter, and an outlet with no node in its contacts
    case = armed(n=3, threshold=2)
    case.release(*case.nodes[:2])
    card = make_case_card(case.policy)
    # When the outlet recovers with the card
    code, stdout, stderr = v(case.homes["outlet1"], "recover", card, "--out", tmp_path / "o")
    # Then the card's nodes are asked, and the files come back
    assert code == 0, stderr
    assert same_tree(case.source, tmp_path / "o" / case.source.name)
    assert "node node-c: not released" in stdout


def test_a_case_card_pinning_another_policy_is_refused(armed, v, tmp_path):
    # Given a card whose policy hash is not the policy the nodes serve (a swapped card)
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    other = armed(n=1, threshold=1)
    body = {
        "v": 1,
        "case_id": case.case_id,
        "policy_hash": other.policy.hash,
        "nodes": [n.card.text for n in case.nodes],
        "stores": list(case.policy.stores),
    }
    card = CASE_CARD_PREFIX + b64e(canonical_json(body))
    code, _, stderr = v(case.homes["outlet0"], "recover", card, "--out", tmp_path / "o")
    assert code == 77
    lie = "lying: serves a policy that is not the one on the case card"
    assert stderr.strip().splitlines() == [
        f"velador: error: no node of case {case.case_id} served a release that verifies: "
        f"node-a ({lie}), node-b ({lie})",
        "velador: hint: compare the case card (policy hash) with the reporter or another recipient",
    ]


def test_a_non_recipient_cannot_fetch(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    case.add_nodes_as_contacts(v, case.homes["outsider"], case.nodes)
    code, _, stderr = recover(v, case, "outsider", tmp_path / "o")
    # The nodes give a key outside the case the unknown-case answer (protocol §2.4).
    assert code == 66
    assert stderr.strip().splitlines() == [
        f"velador: error: none of the 2 node(s) asked holds case {case.case_id}",
        "velador: hint: check the case id, or recover with the case card the reporter gave you; "
        "nodes answer the same way to a key that is not a recipient of the case (yours is "
        f"{case.outsider.fingerprint})",
    ]


def test_nothing_released_yet(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 66
    assert stderr.strip().splitlines()[0] == (
        f"velador: error: no node has released case {case.case_id} yet: node-a (not released: "
        "the case is not released (state ARMED)), node-b (not released: the case is not "
        "released (state ARMED))"
    )


def test_recover_needs_a_case_or_shares(v, tmp_path):
    code, _, stderr = v(tmp_path / "h", "recover", "--out", tmp_path / "o")
    assert code == 75
    assert stderr.splitlines()[0] == (
        "velador: error: say where the shares come from: a case card or id, or --shares DIR"
    )


def test_offline_share_files_complete_the_nodes(armed, v, tmp_path):
    # Given a 3-of-4 case: two node shares, two offline share files; one node released
    case = armed(n=2, threshold=3, offline=2)
    case.release(case.nodes[0])
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    # When the outlet recovers from the nodes alone, it is one share short
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 66
    assert "only 1 of the 2 nodes" in stderr
    # And with the two offline files beside the nodes, it recovers
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o", "--shares", case.usb)
    assert code == 0, stderr
    assert same_tree(case.source, tmp_path / "o" / case.source.name)
    assert "Shares used: 3" in stdout
    assert stderr.strip() == (
        "velador: warning: skipped node node-b (not released: the case is not released "
        "(state ARMED))"
    )


def test_share_files_of_another_case_beside_the_nodes_are_named(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    other = armed(n=1, threshold=2, offline=1)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o", "--shares", other.usb)
    assert code == 0, stderr
    assert stderr.strip() == (
        "velador: warning: skipped the share files: they belong to another case"
    )


def test_a_lying_node_and_a_missing_store_replica_are_both_named(armed, v, tmp_path):
    # Given two store replicas, one of which lost an object, and a node with an altered envelope
    case = armed(n=3, threshold=2, stores=2)
    case.release(*case.nodes)
    case.tamper(case.nodes[2], _flip_sealed)
    replica = Path(case.policy.stores[0].removeprefix("file://"))  # read first
    lost = sorted(p for p in replica.rglob("*") if p.is_file() and "/objects/" in str(p))[0]
    lost.unlink()
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    # When the outlet recovers
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o")
    # Then everything comes back, and both the lying node and the missing object are named
    kinds = ("object", "pack")
    assert code == 0, stderr
    assert same_tree(case.source, tmp_path / "o" / case.source.name)
    assert "skipped node node-c (lying: sent an invalid release" in stderr
    named = [f"store: {case.policy.stores[0]}: {k} {lost.name[:12]} is missing" for k in kinds]
    assert any(n in stdout for n in named)  # a chunk object, or a pack of small files


def test_recovery_after_destroy_fails_clearly(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    for node in case.nodes:
        case.client(node).destroy(case.case_id)
        node.wait_state(case.case_id, "DESTROYED")
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    assert code == 66
    assert stderr.strip().splitlines() == [
        f"velador: error: case {case.case_id} was destroyed: the 2 node(s) that held it have "
        "deleted its envelopes",
        "velador: hint: nothing can be recovered from the nodes; ask the case's offline share "
        "holders, if it had any (--shares DIR)",
    ]


def test_without_a_card_a_policy_by_a_known_reporter_beats_a_forged_one(
    armed, v, tmp_path, stand_in
):
    # Given a 2-of-4 case released at one honest node, and two stand-in nodes serving a policy
    # for the same case id signed by someone else (so the forged one has more answers)
    second = StandIn()
    try:
        liars = [
            person(tmp_path / f"liar{i}", f"node-liar{i}", "node", s.url)
            for i, s in enumerate((stand_in, second))
        ]
        case = armed(n=2, threshold=2, extra_cards=tuple(x.card for x in liars))
        case.release(case.nodes[0])
        forged = sign_policy(
            dataclasses.replace(case.policy, reporter=case.outsider.card, doc={}),
            case.outsider.sign_key,
        )
        for s, liar in zip((stand_in, second), liars, strict=True):
            s.release = {
                "case_id": case.case_id,
                "node": liar.fingerprint,
                "released_at": 1,
                "policy": forged.doc,
                "envelopes": [],
            }
        home = case.homes["outlet0"]
        case.add_nodes_as_contacts(v, home, case.nodes)
        v.ok(home, "contact", "add", case.reporter.card.text, "--alias", "ana")
        # When the outlet recovers by case id
        code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    finally:
        second.close()
    # Then the policy of the reporter it knows is the one judged; the stand-ins are named
    assert code == 66
    lie = "lying: serves a different version of the case policy"
    assert stderr.strip().splitlines()[-2] == (
        f"velador: error: only 1 of the 4 nodes of case {case.case_id} have released a valid "
        "share (2 of 4 needed); not yet: node-b (not released: the case is not released "
        f"(state ARMED)), node-liar0 ({lie}), node-liar1 ({lie})"
    )


def test_a_node_serving_a_share_it_does_not_hold_is_named_and_the_rest_used(armed, v, tmp_path):
    # Given node-b also serves node-a's (genuine, reporter-signed) envelope, as if it held it
    case = armed(n=3, threshold=2)
    case.release(*case.nodes)
    holder_a = case.policy.holders_of(case.nodes[0].card.sign_pk)[0].id
    env = next(
        e for e in case.envelopes[holder_a] if e["body"]["recipient"] == case.outlets[0].fingerprint
    )
    conn = sqlite3.connect(case.nodes[1].dir / "node.db", timeout=10)
    with conn:
        conn.execute(
            "INSERT INTO envelopes (case_id, holder, recipient, envelope) VALUES (?,?,?,?)",
            (case.case_id, holder_a, case.outlets[0].fingerprint, json.dumps(env)),
        )
    conn.close()
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    # When the outlet recovers
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    # Then node-b's own share is used, the borrowed one is named and skipped
    assert code == 0, stderr
    assert stderr.strip() == (
        f"velador: warning: node node-b served the share of holder {holder_a}, which it does "
        "not hold; skipped those"
    )
    assert same_tree(case.source, tmp_path / "o" / case.source.name)


def test_every_node_down_is_a_node_error(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    case.add_nodes_as_contacts(v, case.homes["outlet0"], case.nodes)
    for node in case.nodes:
        node.kill()
    code, _, stderr = recover(v, case, "outlet0", tmp_path / "o")
    a, b = case.nodes
    assert code == 69
    assert stderr.strip().splitlines() == [
        f"velador: error: no node of case {case.case_id} could be reached: "
        f"node-a (unreachable: {a.url}), node-b (unreachable: {b.url})",
        "velador: hint: check your network connection (or Tor), then run the command again",
    ]
