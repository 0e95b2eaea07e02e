"""Metrics (issue 11, finding 3 d): off by default, never on the API port, loopback only, and
blind to duress. Real `velador node serve` processes on loopback."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from escrow_node.config import load_config
from escrow_node.errors import ConfigError
from tests.conftest import free_port
from tests.node.conftest import wait_for
from tests.node.test_integration import hook_events
from vault.nodeproto.messages import make_heartbeat

pytestmark = pytest.mark.integration

TIME_DRIVEN = ("velador_node_sweeps_total", "velador_node_sweep_seconds")
"""Moved by the engine's timer, not by requests: left out of the before/after comparisons."""


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url, timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created") or s.name.startswith(TIME_DRIVEN):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(before: dict, after: dict) -> dict:
    keys = set(before) | set(after)
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k) != before.get(k)
    }


def test_metrics_are_off_by_default_and_never_on_the_api_port(nodes, tmp_path):
    # Given a node made by `node init` with its defaults
    n = nodes("node-m0")
    assert load_config(n.dir).metrics is False
    # Then the API port has no /metrics, and nothing listens on the default metrics port's
    # address unless enabled (the API port refuses the path the onion example used to publish).
    assert httpx.get(n.url + "/metrics").status_code == 404
    # When enabled, they are on their own loopback listener and still not on the API port.
    port = free_port()
    n.stop()
    n.configure(metrics={"enabled": True, "listen": f"127.0.0.1:{port}"})
    n.start()
    assert httpx.get(n.url + "/metrics").status_code == 404
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "velador_node_heartbeats_total" in text
    assert 'velador_node_cases{state="ARMED"}' in text


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "192.0.2.7:9464", "[::]:9464", "9464"])
def test_metrics_listener_must_be_loopback(nodes, listen):
    n = nodes("node-m1", start=False)
    n.configure(metrics={"enabled": True, "listen": listen})
    with pytest.raises(ConfigError, match="loopback"):
        load_config(n.dir)


def test_a_duress_check_in_moves_the_metrics_exactly_like_a_normal_one(
    nodes, world_for, webhooks, clock
):
    # Given a node with metrics on, a case whose editors and operator get webhooks
    port = free_port()
    n = nodes(
        "node-m2",
        metrics={"enabled": True, "listen": f"127.0.0.1:{port}"},
        notify={"operator_webhook": f"{webhooks.url}/operator"},
    )
    url = f"http://127.0.0.1:{port}/metrics"
    w = world_for(n.card, every=86400, grace=3600, duress="alert")
    cid = w.policy.case_id
    reporter = n.client(w.reporter)
    reporter.register_case(w.policy, w.envs_for(n.card))
    for i, e in enumerate(w.editors):
        n.client(e).subscribe(cid, "webhook", f"{webhooks.url}/editor{i}")

    def idle() -> bool:
        sql = "SELECT count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL"
        return n.query(sql)[0][0] == 0

    wait_for(idle, what="outbox drained")
    m0 = scrape(url)
    # When the reporter checks in normally, then under duress (one minute apart each)
    clock.advance(60)
    reporter.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))
    wait_for(idle, what="outbox drained")
    m1 = scrape(url)
    clock.advance(60)
    reporter.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 2, clock.now(), duress=True))
    wait_for(lambda: hook_events(webhooks, "/editor0").get("duress") == 1, what="duress alert")
    wait_for(lambda: hook_events(webhooks, "/operator").get("duress") == 1, what="operator copy")
    wait_for(idle, what="outbox drained")
    m2 = scrape(url)
    # Then the alarm went out, and every metric moved the same way for both check-ins
    # (Not the verification worker's fallbacks: whether a worker was ready is load, not duress.)
    ops = {"velador_node_verify_fallbacks_total"}

    def moved(d: dict) -> dict:
        return {k: v for k, v in d.items() if k[0] not in ops}

    assert moved(delta(m0, m1)) == moved(delta(m1, m2))
    assert delta(m0, m1)[("velador_node_heartbeats_total", ())] == 1
