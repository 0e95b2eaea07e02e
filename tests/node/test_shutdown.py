"""A node stops promptly on SIGTERM, whatever its peers and delivery targets do.

Regression (seen in tests/e2e/test_drill.py under load): a node with a wrong mail server did not
exit within 20 s of SIGTERM. Shutdown waited for every delivery in flight (a webhook that drips
holds one for its whole `webhook_timeout`; a mail server that accepts and never greets, for the
SMTP timeout) and for every pre-release peer sync. A service manager then kills the node with
SIGKILL, and an operator learns that stopping a node is slow and unpredictable. An interrupted
delivery is not an attempt: it is sent again after the restart (protocol §8.3, at-least-once).
"""

from __future__ import annotations

import signal
import time

from tests.hostile import HostileServer
from tests.node.builders import T0, person
from tests.node.conftest import wait_for

EVERY, GRACE = 3600, 600
BOUND = 20.0
STOP_BOUND = 12.0
"""Generous: shutdown must not wait out the 60 s timeouts configured below."""


def test_sigterm_during_hanging_deliveries_and_syncs_exits_promptly(
    nodes, world_for, clock, tmp_path
):
    drip, stall, evil = HostileServer("drip"), HostileServer("stall"), HostileServer("drip")
    try:
        # Given a node whose deliveries and peer syncs may each take a minute: webhooks that
        # drip, a mail server that accepts and never greets, and a case naming a dripping peer
        smtp = {"host": "127.0.0.1", "port": stall.port, "security": "plain", "from": "n@v.test"}
        smtp["timeout"] = 60
        a = nodes("node-a", smtp=smtp, notify={"webhook_timeout": 60}, peers={"timeout": 60})
        evil_card = person(tmp_path / "evil", "evil", "node", evil.url).card
        w = world_for(a.card, evil_card, every=EVERY, grace=GRACE)
        cid = w.policy.case_id
        a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
        rep = a.client(w.reporter)
        for i in range(3):
            rep.subscribe(cid, "webhook", f"{drip.url}/h{i}")
        rep.subscribe(cid, "email", "rita@v.test")
        # When the case is overdue, then due for release (its pre-release sync asks the
        # dripping peer), and the node is told to stop while all of that is in flight
        clock.set(T0 + EVERY + GRACE + 1)
        wait_for(
            lambda: drip.connections >= 1 and stall.connections >= 1 and evil.connections >= 1,
            BOUND,
            "deliveries and the peer sync to be in flight",
        )
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        code = a.proc.wait(BOUND + 10)
        took = time.monotonic() - t0
        a.proc = None
        # Then it exits cleanly well before any of those timeouts
        assert code == 0, a.log_text()[-3000:]
        assert took < STOP_BOUND, f"shutdown took {took:.1f} s"
        log = a.log_text()
        assert "node stopped cleanly" in log
        assert "still waiting on other machines" in log  # they were in flight, and left
        # and the interrupted deliveries were not counted as failed attempts: they wait
        # for the next start, with no error recorded for them
        rows = a.query(
            "SELECT channel, attempts, failed, last_error, delivered FROM outbox"
            " WHERE channel IN ('webhook', 'email')"
        )
        assert rows
        assert all(r["delivered"] is None and r["failed"] is None for r in rows)
        assert not any("interrupted" in (r["last_error"] or "") for r in rows)
    finally:
        for s in (drip, stall, evil):
            s.close()
