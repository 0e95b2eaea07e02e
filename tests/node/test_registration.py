"""Who may use a node (docs/protocol.md §4.1.1, §2.4; docs/security.md "Hostile registrants"):
closed registration with admitted keys and single-use invitation codes, webhook targets kept off
private addresses, and one answer for an unknown case and a case the caller is not part of.

Every test drives a real `velador node serve` process and the real `velador node` commands."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from cli.node_cmds import node as node_cli
from tests.node.builders import make_world
from tests.node.conftest import wait_for
from tests.node.test_hostile import send
from vault.errors import FormatError, PolicyError
from vault.nodeproto.messages import make_heartbeat

CLOSED = {"mode": "closed"}


def node_cmd(*args: str) -> str:
    res = CliRunner().invoke(node_cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.stdout


def register(node, w, invitation: str | None = None) -> dict:
    return node.client(w.reporter).register_case(
        w.policy, w.envs_for(node.card), invitation=invitation
    )


def refused(fn) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        fn()
    return info.value


# --- closed registration --------------------------------------------------------------------


def test_a_closed_node_refuses_an_unknown_key_and_says_how_to_get_in(nodes, world_for):
    n = nodes("closed", registration=CLOSED)
    w = world_for(n.card)
    err = refused(lambda: register(n, w))
    assert err.code == "registration_closed"  # type: ignore[attr-defined]
    assert "accepts new cases only from reporters its operator admitted" in err.message
    assert "invitation code" in (err.hint or "")
    assert w.reporter.fingerprint in (err.hint or "")
    assert n.state(w.policy.case_id) is None


def test_a_node_is_closed_unless_init_says_open(tmp_path):
    data = tmp_path / "n"
    node_cmd("init", "--data", data, "--name", "n", "--url", "http://127.0.0.1:9")
    assert '[registration]\nmode = "closed"' in (data / "node.toml").read_text()


def test_an_admitted_fingerprint_registers_and_the_operator_sees_it(nodes, world_for):
    n = nodes("closed", registration=CLOSED)
    w = world_for(n.card)
    # Spaces and lower case, as someone copying it from a phone call might type it.
    typed = w.reporter.fingerprint.lower().replace("-", " ")
    assert "admitted" in node_cmd("admit", "--data", n.dir, typed)
    assert register(n, w)["state"] == "ARMED"
    listing = node_cmd("access", "--data", n.dir)
    assert w.reporter.fingerprint in listing and "registration: closed" in listing


def test_an_invitation_code_works_once_and_only_once(nodes, world_for):
    n = nodes("closed", registration=CLOSED)
    code = node_cmd("invite", "--data", n.dir).strip()
    stored = n.query("SELECT id, verifier FROM invitations")
    assert len(stored) == 1 and code.split(".")[1] not in stored[0]["verifier"]  # only a hash
    first, second = world_for(n.card), world_for(n.card)
    assert first.reporter.fingerprint != second.reporter.fingerprint
    # A wrong secret for the right id does not use the code up.
    wrong = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB")
    assert refused(lambda: register(n, first, wrong)).code == "invitation_refused"  # type: ignore[attr-defined]
    assert register(n, first, code)["state"] == "ARMED"
    # The same code for another reporter: refused, with the same words as any bad code.
    err = refused(lambda: register(n, second, code))
    assert err.code == "invitation_refused"  # type: ignore[attr-defined]
    assert "unknown, was already used, or has expired" in err.message
    assert n.state(second.policy.case_id) is None
    # The invitation admitted the first reporter: her next case needs no code.
    again = make_world(n.dir.parent / "again", [n.card], people={"reporter": first.reporter})
    assert register(n, again)["state"] == "ARMED"
    assert "used" in node_cmd("access", "--data", n.dir)
    # The code is in no log and in no audit entry.
    assert code.split(".")[1] not in n.log_text()
    audit = " ".join(r[0] for r in n.query("SELECT detail FROM audit"))
    assert code.split(".")[1] not in audit and '"admission":"invitation"' in audit


def test_an_expired_invitation_code_is_refused(nodes, world_for, clock):
    n = nodes("closed", registration=CLOSED)
    code = node_cmd("invite", "--data", n.dir, "--ttl", "60s").strip()
    w = world_for(n.card)
    clock.set(int(time.time()) + 120)  # the node's clock: past the code's expiry
    assert refused(lambda: register(n, w, code)).code == "invitation_refused"  # type: ignore[attr-defined]
    assert n.query("SELECT used FROM invitations")[0][0] is None


def test_a_revoked_invitation_is_refused(nodes, world_for):
    n = nodes("closed", registration=CLOSED)
    code = node_cmd("invite", "--data", n.dir).strip()
    assert "revoked invitation" in node_cmd("revoke", "--data", n.dir, code.split(".")[0])
    w = world_for(n.card)
    assert refused(lambda: register(n, w, code)).code == "invitation_refused"  # type: ignore[attr-defined]


def test_an_open_node_accepts_anyone(nodes, world_for):
    n = nodes("open", registration={"mode": "open"})
    for _ in range(2):
        w = world_for(n.card)
        assert register(n, w)["state"] == "ARMED"


def test_a_registered_reporter_keeps_checking_in_and_rotating_after_her_key_is_revoked(
    nodes, world_for, clock
):
    # Given a case registered by an admitted reporter at a closed node
    n = nodes("closed", registration=CLOSED)
    w = world_for(n.card)
    node_cmd("admit", "--data", n.dir, w.reporter.fingerprint)
    c = n.client(w.reporter)
    register(n, w)
    # When the operator revokes her key
    assert "revoked key" in node_cmd("revoke", "--data", n.dir, w.reporter.fingerprint)
    # Then her heartbeats, an idempotent re-registration and a rotation of the same case all
    # still go through (refusing them would release her material) ...
    clock.advance(100)
    assert c.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))["seq"] == 1
    assert register(n, w)["state"] == "ARMED"
    people = {"reporter": w.reporter}
    rot = make_world(n.dir.parent / "rot", [n.card], people=people, replaces=w.policy)
    assert register(n, rot)["policy_hash"] == rot.policy.hash
    clock.advance(100)
    assert c.heartbeat(make_heartbeat(rot.policy, w.reporter.sign_key, 2, clock.now()))["seq"] == 2
    assert n.state(w.policy.case_id) == "ARMED"
    # ... but a new case of hers is refused.
    new = make_world(n.dir.parent / "new", [n.card], people=people)
    assert refused(lambda: register(n, new)).code == "registration_closed"  # type: ignore[attr-defined]


def test_a_stranger_cannot_take_over_or_probe_a_case_id_at_a_closed_node(nodes, world_for):
    n = nodes("closed", registration=CLOSED)
    w = world_for(n.card)
    node_cmd("admit", "--data", n.dir, w.reporter.fingerprint)
    register(n, w)
    # A stranger's policy for the same case id (even one naming the real policy as replaced)
    # gets what any new case of hers gets: nothing tells her the id is taken.
    other = world_for(n.card)
    forged = make_world(
        n.dir.parent / "forged", [n.card], people={"reporter": other.reporter}, replaces=w.policy
    )
    assert forged.policy.case_id == w.policy.case_id
    assert refused(lambda: register(n, forged)).code == "registration_closed"  # type: ignore[attr-defined]
    assert n.query("SELECT policy_hash FROM cases")[0][0] == w.policy.hash


# --- webhook targets (SSRF) -------------------------------------------------------------------


def test_a_loopback_webhook_is_refused_at_subscription(nodes, world_for, webhooks):
    n = nodes("strict", registration={"mode": "open", "allow_private_targets": False})
    w = world_for(n.card)
    register(n, w)
    c = n.client(w.reporter)
    cid = w.policy.case_id
    for url in (
        webhooks.url + "/hook",
        "http://2130706433/hook",  # 127.0.0.1 spelled as one number
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://localhost:8700/v1/health",
    ):
        with pytest.raises(FormatError) as info:
            c.subscribe(cid, "webhook", url)
        assert info.value.code == "target_refused", url  # type: ignore[attr-defined]
        assert url.split("//")[1].split("/")[0] not in info.value.message  # no address echoed
    assert n.query("SELECT count(*) FROM subscriptions")[0][0] == 0


def test_a_webhook_that_turned_private_is_not_called_at_delivery(nodes, world_for, webhooks):
    # Given a webhook registered while the node allowed loopback targets (as if its DNS name
    # pointed at a public address then)
    n = nodes("n", registration={"mode": "open", "allow_private_targets": True})
    w = world_for(n.card)
    register(n, w)
    n.client(w.recipients[0]).subscribe(w.policy.case_id, "webhook", webhooks.url + "/desk")
    # When the node runs without that allowance and a notice is due
    n.term()
    n.configure(registration={"allow_private_targets": False})
    n.start()
    n.client(w.reporter).release_now(w.policy.case_id)

    # Then the delivery is refused before any connection, and the error names no address
    def tried():
        rows = n.query(
            "SELECT attempts, last_error FROM outbox WHERE channel = 'webhook' AND attempts > 0"
        )
        return rows or None

    rows = wait_for(tried, 20, "the webhook delivery attempt")
    assert all("non-public address" in r["last_error"] for r in rows)
    assert all("127.0.0.1" not in r["last_error"] for r in rows)
    assert webhooks.for_("/desk") == []


def test_an_allowed_network_may_be_reached(nodes, world_for, webhooks):
    n = nodes(
        "n", registration={"allow_private_targets": False, "allowed_networks": ["127.0.0.0/8"]}
    )
    w = world_for(n.card)
    register(n, w)
    n.client(w.recipients[0]).subscribe(w.policy.case_id, "webhook", webhooks.url + "/desk")
    n.client(w.reporter).release_now(w.policy.case_id)
    wait_for(lambda: webhooks.for_("/desk", "released"), 20, "the released webhook")


# --- one answer for unknown and foreign cases (404 vs 403) ------------------------------------


def test_a_stranger_gets_the_unknown_case_answer_for_a_known_case(inproc, world_for):
    w = world_for(inproc.card)
    inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
    known, unknown = w.policy.case_id, "case-00000000deadbeef"
    hb = make_heartbeat(w.policy, w.reporter.sign_key, 1, inproc.clock.now())
    from vault.encoding import canonical_json

    for method, tail, body in (
        ("GET", "", b""),
        ("POST", "/pause", b'{"until": 1}'),
        ("POST", "/heartbeat", canonical_json(hb)),  # the plain-ASGI fast path
        ("GET", "/heartbeat", b""),
        ("POST", "/release-request", b"{}"),
        ("GET", "/release", b""),
        ("POST", "/subscribe", b'{"channel": "email", "target": "a@b.example"}'),
    ):
        answers = []
        for cid in (known, unknown):
            r = send(inproc, w.outsider, method, f"/v1/cases/{cid}{tail}", body, case_id=cid)
            answers.append((r.status_code, r.headers["content-type"], r.text.replace(cid, "ID")))
        assert answers[0] == answers[1], (method, tail, answers)
        assert answers[0][0] == 404 and '"unknown_case"' in answers[0][2]


def test_a_version_1_database_gains_the_registration_tables_and_is_closed(tmp_path):
    # A node database from before this release (schema 1) opens, migrates, and its node.toml
    # (no [registration] section) means closed registration.
    import sqlite3

    from escrow_node import admission
    from escrow_node.config import RegistrationConfig, load_config
    from escrow_node.db import _SCHEMA_V1, SCHEMA_VERSION, Store
    from escrow_node.errors import RegistrationClosed

    path = tmp_path / "node.db"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V1 + "; PRAGMA user_version=1;")
    conn.close()
    store = Store(path)
    try:
        with store.tx() as c:
            assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            with pytest.raises(RegistrationClosed):
                admission.gate(c, RegistrationConfig(), "ABCD-EFGH-IJKL-MNOP", None, 0)
    finally:
        store.close()
    (tmp_path / "node.toml").write_text('[node]\nname = "n"\nurl = "https://n.example"\n')
    assert load_config(tmp_path).registration == RegistrationConfig(mode="closed")


def test_a_new_case_naming_a_private_peer_url_is_refused_but_its_rotation_is_not(nodes, world_for):
    # Given a node that may not reach private addresses, and a second node card on loopback
    strict = {"mode": "open", "allow_private_targets": False}
    n = nodes("n", registration=strict)
    other = nodes("other", start=False)
    w = world_for(n.card, other.card)
    # When a reporter registers a case naming that peer, it is refused without naming the URL
    with pytest.raises(FormatError) as info:
        register(n, w)
    assert info.value.code == "target_refused"  # type: ignore[attr-defined]
    assert info.value.message.startswith("node n: the URL of node other is a loopback, private")
    assert other.url not in info.value.message and n.state(w.policy.case_id) is None
    # A peer URL the operator set in [peers] urls is trusted
    n.term()
    n.configure(peers={"urls": {other.card.fingerprint: other.url}})
    n.start()
    assert register(n, w)["state"] == "ARMED"
    # and once the case is registered, a rotation naming the same peers is never refused for it
    n.term()
    n.configure(peers={"urls": {}})
    n.start()
    people = {"reporter": w.reporter}
    rot = make_world(n.dir.parent / "rot", [n.card, other.card], people=people, replaces=w.policy)
    assert register(n, rot)["policy_hash"] == rot.policy.hash
