"""End to end: real `velador node serve` processes on loopback, an aiosmtpd server and a
webhook receiver; every transition, with SIGKILL and restart around each one.

Notifications are delivered at least once with a stable id (Velador-Delivery header, email
Message-ID). The checks below require every expected notification to arrive, and any repeat to
be a redelivery of the same id, which receivers drop (docs/protocol.md §8.3).
"""

from __future__ import annotations

import collections

import pytest
from click.testing import CliRunner

from cli.node_cmds import node as node_cli
from tests.node.conftest import wait_for
from vault.envelope import open_envelope
from vault.nodeproto.messages import make_heartbeat

pytestmark = pytest.mark.integration


def smtp_cfg(smtp):
    return {
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "plain",
            "from": "node@velador.test",
        }
    }


def delivered(n) -> bool:
    rows = n.query("SELECT count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL")
    return rows[0][0] == 0


def mail_events(smtp, to):
    """event -> number of distinct deliveries (by Velador-Delivery id), and the raw repeats."""
    seen = collections.Counter()
    raw = collections.Counter()
    for m in smtp.for_(to):
        event = m["Subject"].split(": ")[1].split(" (")[0]
        raw[m["Velador-Delivery"]] += 1
        seen[event] += raw[m["Velador-Delivery"]] == 1
    assert all(k.count(":") >= 2 for k in raw)
    return dict(seen)


def hook_events(hooks, path):
    seen = collections.Counter()
    ids = set()
    for c in hooks.for_(path):
        key = c["headers"]["Velador-Delivery"]
        if key not in ids:
            ids.add(key)
            seen[c["body"]["body"]["event"]] += 1
    return dict(seen)


def test_every_transition_survives_sigkill(nodes, world_for, smtp, webhooks, clock):
    n = nodes("node-a", **smtp_cfg(smtp))
    w = world_for(n.card, every=3600, grace=600, remind=(900, 300))
    cid = w.policy.case_id
    reporter = n.client(w.reporter)
    reporter.register_case(w.policy, w.envs_for(n.card))
    reporter.subscribe(cid, "email", "reporter@newsroom.example")
    for i, e in enumerate(w.editors):
        n.client(e).subscribe(cid, "webhook", f"{webhooks.url}/editor{i}")
    for i, r in enumerate(w.recipients):
        n.client(r).subscribe(cid, "email", f"desk{i}@outlet.example")
        n.client(r).subscribe(cid, "webhook", f"{webhooks.url}/outlet{i}")
    t0 = clock.now()
    receipt = reporter.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, t0))
    deadline = receipt["deadline"]
    assert deadline == t0 + 3600 and receipt["release_at"] == deadline + 600

    # ARMED -> REMINDED while running, then SIGKILL right after the transition.
    clock.set(deadline - 900)
    n.wait_state(cid, "REMINDED")
    n.kill()
    n.start()
    # Second reminder: the node is down when it falls due; it is sent at start-up.
    n.kill()
    clock.set(deadline - 300)
    n.start()
    wait_for(
        lambda: mail_events(smtp, "reporter@newsroom.example").get("reminder") == 2,
        what="2 reminders",
    )
    # REMINDED -> OVERDUE while running, then SIGKILL.
    clock.set(deadline)
    n.wait_state(cid, "OVERDUE")
    n.kill()
    n.start()
    assert n.state(cid) == "OVERDUE"
    # OVERDUE -> RELEASED falls due while the node is down: it happens at start-up.
    n.kill()
    clock.set(deadline + 600)
    n.start()
    assert n.state(cid) == "RELEASED"  # before the first request was even served
    wait_for(lambda: delivered(n), what="outbox drained")
    # Kill and restart once more: nothing is sent again, nothing is released again.
    n.kill()
    n.start()
    wait_for(lambda: delivered(n), what="outbox drained")

    assert mail_events(smtp, "reporter@newsroom.example") == {
        "reminder": 2,
        "overdue": 1,
        "released": 1,
    }
    for i in range(2):
        assert hook_events(webhooks, f"/editor{i}") == {"overdue": 1, "released": 1}
        assert hook_events(webhooks, f"/outlet{i}") == {"released": 1}
        assert mail_events(smtp, f"desk{i}@outlet.example") == {"released": 1}
    releases = [
        r for r in n.query("SELECT detail FROM audit WHERE case_id = ?", cid) if '"release:' in r[0]
    ]
    assert len(releases) == 1
    # The recipient fetches and opens its envelope.
    rel = n.client(w.recipients[1]).fetch_release(cid)
    share = open_envelope(rel.envelopes[0], rel.policy, w.recipients[1].box_key)
    assert share.mnemonic == w.mnemonics[0]
    # Webhook bodies are notices signed by the node.
    from vault.signing import verify_document

    body = verify_document(
        webhooks.for_("/outlet0", "released")[0]["body"], "notice", n.card.sign_pk
    )
    assert body["case_id"] == cid and body["state"] == "RELEASED"
    # The audit chain verifies through the CLI, also while the node runs.
    res = CliRunner().invoke(node_cli, ["audit", "--data", str(n.dir), "--verify"])
    assert res.exit_code == 0 and "audit chain ok" in res.output
    assert n.term() == 0
    assert "node stopped cleanly" in n.log_text()


def test_editor_release_objection_and_duress(nodes, world_for, webhooks, clock):
    n = nodes("node-e")
    w = world_for(n.card, every=86400, grace=3600, objection_window=600, duress="alert")
    cid = w.policy.case_id
    reporter = n.client(w.reporter)
    reporter.register_case(w.policy, w.envs_for(n.card))
    for i, e in enumerate(w.editors):
        n.client(e).subscribe(cid, "webhook", f"{webhooks.url}/editor{i}")
    reporter.subscribe(cid, "webhook", f"{webhooks.url}/reporter")
    # A duress check-in: same answer, editors alerted, reporter not.
    normal = reporter.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))
    duress = reporter.heartbeat(
        make_heartbeat(w.policy, w.reporter.sign_key, 2, clock.now(), duress=True)
    )
    assert {k: v for k, v in normal.items() if k not in ("seq", "ref")} == {
        k: v for k, v in duress.items() if k not in ("seq", "ref")
    }
    wait_for(lambda: hook_events(webhooks, "/editor0").get("duress") == 1, what="duress alert")
    assert "duress" not in hook_events(webhooks, "/reporter")
    # Quorum of two editors opens the objection window; SIGKILL inside it; the objection cancels.
    n.client(w.editors[0]).release_request(cid, "detained at a checkpoint")
    r = n.client(w.editors[1]).release_request(cid)
    assert r["state"] == "EDITOR_PENDING"
    n.kill()
    n.start()
    assert n.state(cid) == "EDITOR_PENDING"
    assert n.client(w.reporter).object(cid)["state"] == "ARMED"
    # Second round: nobody objects; the window closes while the node is down.
    n.client(w.editors[0]).release_request(cid)
    n.client(w.editors[1]).release_request(cid)
    n.kill()
    clock.advance(600)
    n.start()
    assert n.state(cid) == "RELEASED"
    wait_for(lambda: delivered(n), what="outbox drained")
    assert hook_events(webhooks, "/reporter") == {"editor_pending": 2, "released": 1}
    assert hook_events(webhooks, "/editor1")["released"] == 1


def test_destroy_with_delay_survives_restart(nodes, world_for, webhooks, clock):
    n = nodes("node-d")
    w = world_for(n.card, destroy_delay=3600)
    cid = w.policy.case_id
    reporter = n.client(w.reporter)
    reporter.register_case(w.policy, w.envs_for(n.card))
    n.client(w.editors[0]).subscribe(cid, "webhook", f"{webhooks.url}/editor0")
    assert reporter.destroy(cid)["state"] == "DESTROYING"
    wait_for(
        lambda: hook_events(webhooks, "/editor0").get("destroy_pending") == 1, what="editors told"
    )
    n.kill()
    clock.advance(3600)
    n.start()
    assert n.state(cid) == "DESTROYED"
    assert n.query("SELECT count(*) FROM envelopes")[0][0] == 0
    wait_for(
        lambda: hook_events(webhooks, "/editor0").get("destroyed") == 1, what="destroyed notice"
    )


def test_pause_and_resume_across_restart(nodes, world_for, clock):
    n = nodes("node-p")
    w = world_for(n.card, every=3600, grace=600)
    cid = w.policy.case_id
    reporter = n.client(w.reporter)
    reporter.register_case(w.policy, w.envs_for(n.card))
    reporter.pause(cid, clock.now() + 7 * 86400)
    n.kill()
    clock.advance(3 * 86400)  # far past the deadline: paused, so no release
    n.start()
    assert n.state(cid) == "PAUSED"
    clock.advance(4 * 86400)  # the pause ends by itself; a full interval starts
    n.wait_state(cid, "ARMED")
    status = reporter.status(cid)
    assert status["deadline"] == clock.now() + 3600


def test_gossip_and_pre_release_sync(nodes, world_for, clock):
    a = nodes("node-a")
    b = nodes("node-b")
    w = world_for(a.card, b.card, every=3600, grace=600, remind=())
    cid = w.policy.case_id
    a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
    b.client(w.reporter).register_case(w.policy, w.envs_for(b.card))
    # The reporter reaches only node A; A forwards to B.
    a.client(w.reporter).heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))
    wait_for(lambda: b.query("SELECT seq FROM cases")[0][0] == 1, what="gossip to B")
    # B is down when the reporter checks in at A; A's forward fails and waits to retry.
    b.kill()
    clock.advance(3000)
    a.client(w.reporter).heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 2, clock.now()))
    # B comes back only after its own (old) deadline and grace have passed. Before releasing
    # it asks A, finds heartbeat 2, and re-arms instead.
    clock.advance(1300)
    b.start()
    assert b.state(cid) == "ARMED"
    assert b.query("SELECT seq FROM cases")[0][0] == 2
    assert a.state(cid) == "ARMED"
    # Silence after that: both release, each exactly once.
    clock.advance(3600 + 600)
    a.wait_state(cid, "RELEASED")
    b.wait_state(cid, "RELEASED")


def test_sigterm_and_cli_views(nodes, world_for, clock):
    n = nodes("node-s")
    w = world_for(n.card)
    n.client(w.reporter).register_case(w.policy, w.envs_for(n.card))
    runner = CliRunner()
    res = runner.invoke(node_cli, ["card", "--data", str(n.dir)])
    assert res.exit_code == 0 and res.output.strip() == n.card.text
    res = runner.invoke(node_cli, ["status", "--data", str(n.dir), "--json"])
    assert res.exit_code == 0
    import json

    assert json.loads(res.output)["cases"]["ARMED"] == 1
    assert "sealed" not in res.output and "mnemonic" not in res.output
    assert n.term() == 0
    assert "node stopped cleanly" in n.log_text()
    # Tampering with the audit log is detected.
    import sqlite3

    conn = sqlite3.connect(n.dir / "node.db")
    conn.execute("UPDATE audit SET detail = '{}' WHERE seq = 1")
    conn.commit()
    conn.close()
    res = runner.invoke(node_cli, ["audit", "--data", str(n.dir), "--verify"])
    assert res.exit_code != 0 and "broken at entry 1" in str(res.exception)
