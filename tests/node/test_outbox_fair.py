"""Outbox fairness and privacy (docs/protocol.md §8.3, §8.5; issue 11, findings 5 and 6).

Regression: the outbox delivered the oldest 64 due rows on 8 threads and waited for all of them.
A case whose many webhooks drip (one byte a second, so no per-read timeout ever fires) held every
thread forever, and no other case's `overdue` or `released` notice went out again. And a refused
email address was written into the node log in full by the delivery error.
"""

from __future__ import annotations

from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.hostile import HostileServer
from tests.node.builders import T0
from tests.node.conftest import wait_for

EVERY, GRACE = 3600, 600
BOUND = 20.0


def test_a_case_with_stalling_webhooks_does_not_starve_another(nodes, world_for, webhooks, clock):
    # Given a node whose delivery deadline is long (30 s), a case whose parties subscribed 15
    # webhooks that drip, and a second case with one honest webhook, registered after it
    a = nodes("node-a", notify={"webhook_timeout": 30})
    with HostileServer("drip") as drip:
        w = world_for(a.card, every=EVERY, grace=GRACE)
        a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
        for who in (w.reporter, *w.editors):
            for i in range(5):
                a.client(who).subscribe(w.policy.case_id, "webhook", f"{drip.url}/h{i}")
        g = world_for(a.card, every=EVERY, grace=GRACE)
        a.client(g.reporter).register_case(g.policy, g.envs_for(a.card))
        a.client(g.reporter).subscribe(g.policy.case_id, "webhook", f"{webhooks.url}/g")
        # When both go silent past deadline + grace (overdue, then released notices for both)
        clock.set(T0 + EVERY + GRACE + 1)
        a.wait_state(w.policy.case_id, "RELEASED", BOUND)
        # Then the second case's notices go out while the first case's webhooks still drip
        wait_for(lambda: webhooks.for_("/g", "overdue"), BOUND, "the overdue notice")
        wait_for(lambda: webhooks.for_("/g", "released"), BOUND, "the released notice")
        assert drip.connections >= 1


def test_delivery_errors_do_not_log_addresses(nodes, world_for, clock):
    # Given an SMTP relay that refuses the recipient, and a webhook whose path is a secret token
    class Refuse:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            return "550 5.1.1 mailbox unavailable"

    ctl = Controller(Refuse(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        smtp = {"host": "127.0.0.1", "port": ctl.port, "security": "plain", "from": "n@v.test"}
        a = nodes("node-a", smtp=smtp)
        w = world_for(a.card, every=EVERY, grace=GRACE)
        cid = w.policy.case_id
        a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
        rep = a.client(w.reporter)
        rep.subscribe(cid, "email", "secret.person@example.org")
        rep.subscribe(cid, "webhook", f"http://127.0.0.1:{free_port()}/hook/SECRET-TOKEN")
        # When a notice is due (the deadline passes) and both deliveries fail
        clock.set(T0 + EVERY + 1)

        def both_failed() -> bool:
            rows = a.query("SELECT DISTINCT channel FROM outbox WHERE last_error IS NOT NULL")
            return {r[0] for r in rows} >= {"email", "webhook"} and "failed" in a.log_text()

        wait_for(both_failed, BOUND, "both deliveries to fail")
        # Then the log names the targets only in redacted form
        text = a.log_text()
        assert "secret.person" not in text
        assert "SECRET-TOKEN" not in text and "/hook" not in text
        assert "s***@example.org" in text
        stored = a.query("SELECT last_error FROM outbox WHERE last_error IS NOT NULL")
        assert stored and not any("secret.person" in r[0] for r in stored)
    finally:
        ctl.stop()


def test_a_target_that_raises_the_unforeseen_is_retried_with_back_off(nodes, world_for, clock):
    # Given a webhook whose host name is not valid IDNA (httpx raises UnicodeError for it)
    a = nodes("node-a")
    w = world_for(a.card, every=EVERY, grace=GRACE)
    cid = w.policy.case_id
    a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
    a.client(w.reporter).subscribe(cid, "webhook", "http://xn--a.com/hook")
    # When a notice for it falls due
    clock.set(T0 + EVERY + 1)
    wait_for(
        lambda: a.query("SELECT attempts FROM outbox WHERE channel = 'webhook' AND attempts > 0"),
        BOUND,
        "a first delivery attempt",
    )
    # Then it counts as a failed attempt with a back-off, not a tight loop of retries
    # (review of issue 11: about 4,600 attempts in 2 s, each with a traceback)
    first = a.query("SELECT max(attempts) FROM outbox WHERE channel = 'webhook'")[0][0]
    clock.advance(1)
    wait_for(lambda: "failed (attempt" in a.log_text(), BOUND, "the failure logged")
    later = a.query("SELECT max(attempts) FROM outbox WHERE channel = 'webhook'")[0][0]
    assert later <= first + 2
    assert a.log_text().count("Traceback") == 0
