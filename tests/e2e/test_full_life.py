"""A whole case life through the user's commands, with real parts everywhere: three `velador node
serve` processes, an S3 store on moto's standalone server beside a folder store, and an aiosmtpd
server receiving the nodes' mail (issue 4, "release by silence, with the reminders and alerts
delivered in order"; "a missing store replica").

Every party registers its own e-mail with `velador notify`; the reporter then goes silent. Each
node must mail, in order, the reminder and the overdue warning to the reporter, the overdue alert
to the editor, and the release notice to the outlet, and nothing to anyone else. The outlet then
recovers from the S3 replica alone, the folder store having been lost.
"""

from __future__ import annotations

import shutil

import pytest

from .conftest import EPW, OPW, wait_for

pytestmark = pytest.mark.integration

DAY = 86400
HOUR = 3600


def _mail_cfg(smtp):
    return {
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "plain",
            "from": "node@velador.test",
        }
    }


def _events(smtp, to, node):
    """The events mailed to `to` by `node`, in arrival order, repeats (same delivery id) dropped."""
    seen, out = set(), []
    for m in smtp.for_(to):
        if f"({node})" not in m["Subject"] or m["Velador-Delivery"] in seen:
            continue
        seen.add(m["Velador-Delivery"])
        out.append(m["Subject"].split(": ")[1].split(" (")[0])
    return out


def test_silence_mails_everyone_in_order_and_s3_alone_recovers(
    v, people, nodes, smtp, clock, make_bucket, s3_env, tmp_path
):
    # Given three nodes that send mail, and a reporter's 2-of-3 case replicated to S3 and a folder
    ns = []
    for i in range(3):
        node = nodes(f"node-{chr(97 + i)}", **_mail_cfg(smtp))
        card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
        v.ok(people.r, "contact", "add", card, "--alias", f"n{i + 1}")
        ns.append(node)
    bucket = make_bucket()
    s3 = f"s3://{bucket}/velador?endpoint={s3_env}"
    folder = tmp_path / "folder-store"
    info = v.json(
        people.r,
        "case", "create", "inv",
        "--node", "n1", "--node", "n2", "--node", "n3", "--threshold", "2",
        "--recipient", "sur", "--recipient", "norte",
        "--editor", "ed1", "--editor-quorum", "1",
        "--every", "3d", "--grace", "1d", "--remind", "12h",
        "--store", f"file://{folder}", "--store", s3,
    )  # fmt: skip
    assert info["armed"] is True
    card = v.ok(people.r, "case", "card", "inv").strip()
    src = tmp_path / "investigación"
    (src / "fuentes").mkdir(parents=True)
    (src / "notas.md").write_text("# Puerto\nLas cifras de la aduana no cuadran.\n")
    (src / "fuentes" / "contrato firmado.pdf").write_bytes(bytes(range(256)) * 4096)
    note = tmp_path / "instrucciones.txt"
    note.write_text("Publicar notas.md primero; proteger a la fuente de la aduana.\n")
    v.ok(people.r, "deposit", "inv", src, "--instructions", note)

    # And each party registers its own address, the editor and the outlet from the case card
    out = v.json(people.r, "notify", "inv", "--email", "ana@reporter.example")
    assert [n["ok"] for n in out["nodes"]] == [True] * 3
    v.ok(people.editors[0], "notify", card, "--email", "ed@diario.example", passphrase=EPW)
    v.ok(people.outlets[0], "notify", card, "--email", "mesa@sur.example", passphrase=OPW)

    # When the reporter goes silent past the reminder, the deadline and the grace period
    t0 = clock.now()
    names = [n.card.name for n in ns]
    clock.set(t0 + 3 * DAY - 12 * HOUR + 60)
    for name in names:
        wait_for(lambda n=name: _events(smtp, "ana@reporter.example", n), what="reminder")
    clock.set(t0 + 3 * DAY + 60)
    for node in ns:
        node.wait_state(info["case_id"], "OVERDUE")
    clock.set(t0 + 4 * DAY + 60)
    for node in ns:
        node.wait_state(info["case_id"], "RELEASED")
    for name in names:
        wait_for(lambda n=name: "released" in _events(smtp, "mesa@sur.example", n), what="release")
        # The editor's release mail is its own outbox entry: under load it can come after the
        # outlet's and the reporter's, so it is waited for too (not assumed).
        wait_for(
            lambda n=name: "released" in _events(smtp, "ed@diario.example", n),
            what="the editor's alert and release notice",
        )
        wait_for(
            lambda n=name: "released" in _events(smtp, "ana@reporter.example", n),
            what="the reporter's release notice",
        )

    # Then each node mailed each party its events once each, in the order they happened
    for name in names:
        assert _events(smtp, "ana@reporter.example", name) == ["reminder", "overdue", "released"]
        assert _events(smtp, "ed@diario.example", name) == ["overdue", "released"]
        assert _events(smtp, "mesa@sur.example", name) == ["released"]
    # And no mail carries anything of the material or the instructions
    for m in smtp.messages:
        text = m.as_string()
        assert "aduana" not in text and "Puerto" not in text

    # When the folder store is lost, the outlet recovers from the S3 replica alone
    shutil.rmtree(folder)
    dest = tmp_path / "recuperado"
    code, stdout, err = v(people.outlets[0], "recover", card, "--out", dest, passphrase=OPW)
    assert code == 0, err
    assert (dest / "investigación" / "notas.md").read_bytes() == (src / "notas.md").read_bytes()
    got = (dest / "investigación" / "fuentes" / "contrato firmado.pdf").read_bytes()
    assert got == (src / "fuentes" / "contrato firmado.pdf").read_bytes()
    assert "proteger a la fuente de la aduana" in stdout + err
    assert "folder-store" in stdout + err  # the missing replica, tried first, is named


def test_notify_bad_inputs(v, people, nodes, tmp_path):
    node = nodes("node-a")
    card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
    v.ok(people.r, "contact", "add", card, "--alias", "n1")
    v.ok(
        people.r, "case", "create", "inv", "--node", "n1", "--threshold", "1",
        "--recipient", "sur", "--every", "3d", "--grace", "1d",
        "--store", f"file://{tmp_path / 's'}",
    )  # fmt: skip
    code, _, err = v(people.r, "notify", "inv")
    assert code == 75
    assert err.splitlines()[0] == "velador: error: give at least one --email or --webhook"
    code, _, err = v(people.r, "notify", "inv", "--email", "not an address")
    assert code != 0 and "Traceback" not in err
    assert "not an email address" in err
    # Someone the policy does not name cannot register an address
    cid = v.json(people.r, "case", "show", "inv")["case_id"]
    v.ok(people.editors[1], "contact", "add", card, "--alias", "n1", passphrase=EPW)
    code, _, err = v(people.editors[1], "notify", cid, "--email", "x@y.example", passphrase=EPW)
    assert code == 75, err
    assert f"velador: error: every node of case {cid} refused" in err
    node.kill()
    code, _, err = v(people.r, "notify", "inv", "--email", "a@b.example", "--timeout", "1")
    assert code == 69
    assert "velador: error: 0 of 1 nodes updated; not changed at node-a" in err
