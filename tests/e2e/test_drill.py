"""Drills end to end (issue 13): real nodes, real SMTP (aiosmtpd), a webhook receiver, the CLI.

One case at three real `velador node serve` processes, parties registered for email and
webhooks with `velador notify`. A drill where everything works gives the verdict "2 of 2
recipients through 3 of 3 nodes"; then one node's mail server is misconfigured and one outlet
lost its key, and the next drill's report names both and who must fix them; then the reporter
falls silent during that drill, and the real deadline still releases on time.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from tests.conftest import free_port

from .conftest import DAY, EPW, OPW, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def drilled(v, people, nodes, smtp, webhooks, tmp_path):
    relay = {"host": "127.0.0.1", "port": smtp.port, "security": "plain", "from": "n@v.test"}
    ns = []
    for i in range(3):
        node = nodes(f"node-{chr(97 + i)}", smtp=relay)
        card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
        v.ok(people.r, "contact", "add", card, "--alias", f"n{i + 1}")
        v.ok(people.outlets[0], "contact", "add", card, "--alias", f"n{i + 1}", passphrase=OPW)
        ns.append(node)
    args = ["case", "create", "inv", "--node", "n1", "--node", "n2", "--node", "n3"]
    args += ["--threshold", "2", "--recipient", "sur", "--recipient", "norte"]
    args += ["--every", "3d", "--grace", "1d", "--editor", "ed1", "--editor", "ed2"]
    args += ["--store", f"file://{tmp_path / 'storeA'}", "--drill-every", "90d"]
    info = v.json(people.r, *args)
    assert info["armed"] is True
    data = tmp_path / "data" / "notas"
    data.mkdir(parents=True)
    (data / "a.md").write_text("contratos\n")
    v.ok(people.r, "deposit", "inv", data)
    card = v.ok(people.r, "case", "card", "inv").strip()
    v.ok(people.r, "notify", "inv", "--email", "rita@v.test")
    for name, home, pw in [
        ("sur", people.outlets[0], OPW),
        ("norte", people.outlets[1], OPW),
        ("ed1", people.editors[0], EPW),
        ("ed2", people.editors[1], EPW),
    ]:
        hook = f"{webhooks.url}/{name}"
        v.ok(home, "notify", card, "--email", f"{name}@v.test", "--webhook", hook, passphrase=pw)
    return SimpleNamespace(nodes=ns, card=card, case_id=info["case_id"], **vars(people))


def report(v, home):
    code, out, err = v(home, "drill", "report", "inv", "--json")
    assert "Traceback" not in err
    return code, json.loads(out)


def test_drills_end_to_end(v, drilled, smtp, webhooks, clock, homes):
    d = drilled
    answerers = [(d.outlets[0], OPW), (d.outlets[1], OPW), (d.editors[0], EPW), (d.editors[1], EPW)]
    # Given a drill where everything works
    code, _, err = v(d.r, "drill", "inv")
    assert code == 0, err
    assert "started at 3 of 3 nodes. Nothing was released." in err
    # Then every party got a notice marked as a drill, by email and webhook, from every node
    for name in ("sur", "norte", "ed1", "ed2"):
        wait_for(lambda n=name: len(webhooks.for_(f"/{n}", "drill")) == 3, what=f"{name} hooks")
        wait_for(lambda n=name: len(smtp.for_(f"{n}@v.test", "drill")) == 3, what=f"{name} mail")
    wait_for(lambda: len(smtp.for_("rita@v.test", "drill")) == 3, what="the reporter's mail")
    mail = smtp.for_("sur@v.test", "drill")[0]
    assert "SIMULACRO / DRILL" in mail["Subject"]
    assert "Esto es un simulacro" in mail.get_payload()
    assert "SIMULACRO" in webhooks.for_("/sur", "drill")[0]["body"]["body"]["text"]
    # And the outlets' inbox marks it as a drill and says what to run
    inbox = v.ok(d.outlets[0], "inbox", passphrase=OPW)
    assert "SIMULACRO / DRILL" in inbox and "drill answer" in inbox
    # When every recipient and editor answers: sur from its inbox (by case id: the stores it
    # checks are those the nodes name), norte and the editors with the case card
    for home, pw in answerers:
        if home is d.outlets[0]:
            out = v.ok(home, "inbox", "--all", "--answer-drills", passphrase=pw)
            assert "SIMULACRO / DRILL" in out
        else:
            v.ok(home, "drill", "answer", d.card, passphrase=pw)
    # Then the report's verdict says a release would reach everyone
    code, rep = wait_for(lambda: (r := report(v, d.r))[0] == 0 and r, what="a clean report")
    assert rep["verdict"] == (
        "A release now would reach 2 of 2 recipients through 3 of 3 nodes."
    ), rep["problems"]
    # and `status` shows the same verdict, and who answered through which nodes
    status = v.ok(d.r, "status", "inv")
    assert "A release now would reach 2 of 2 recipients" in status
    assert "recipient sur answered" in status and "through node-a, node-b, node-c" in status
    # with, per node, how many drill notices went out (all of them here)
    for node in ("node-a", "node-b", "node-c"):
        assert re.search(rf"node {node}: (\d+) of \1 drill notices delivered", status), status
    # Nothing real moved: every node is still ARMED, no editor request counted
    assert all(n.state(d.case_id) == "ARMED" for n in d.nodes)

    # Given the drill ends while the reporter keeps checking in
    for _ in range(4):
        clock.advance(2 * DAY)
        v.ok(d.r, "checkin")
    # and node-c's mail server setting is wrong, and outlet norte lost its key (a new identity)
    c = d.nodes[2]
    c.stop()
    c.configure(smtp={"port": free_port()})
    c.start()
    lost = homes("norte-new")
    v.ok(lost, "id", "new", "--name", "Diario norte", "--role", "outlet", passphrase=OPW)
    # When the reporter runs a new drill
    v.ok(d.r, "drill", "inv")
    v.ok(d.outlets[0], "drill", "answer", d.card, passphrase=OPW)
    for home in d.editors:
        v.ok(home, "drill", "answer", d.card, passphrase=EPW)
    code, _, err = v(lost, "drill", "answer", d.card, passphrase=OPW)
    assert code != 0 and "Traceback" not in err
    assert "no node of case" in err

    # Then the report names both, and who must fix them
    def broken():
        code, rep = report(v, d.r)
        text = " | ".join(rep["problems"])
        return code != 0 and "node-c could not send email" in text and rep

    rep = wait_for(broken, what="a report naming the mail server")
    text = " | ".join(rep["problems"])
    assert "the operator of node-c must fix its mail server" in text
    assert "recipient norte did not answer at any node" in text
    assert "rotate the case" in text
    assert rep["verdict"] == "A release now would reach 1 of 2 recipients through 2 of 3 nodes."
    # and `status` names node-c's failing email deliveries, channel by channel
    _code, out, _err = v(d.r, "status", "inv")
    assert re.search(r"node node-c: (\d+) of (\d+) drill notices delivered", out), out
    assert re.search(r"email to \S+: (failed|failing)", out), out
    # When the reporter falls silent during this drill
    clock.advance(3 * DAY + DAY + 1)
    # Then the real deadline still releases on time, at every node
    for n in d.nodes:
        n.wait_state(d.case_id, "RELEASED")
