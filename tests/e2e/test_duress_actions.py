"""The reporter's commands under duress, through the real CLI at real nodes (issue 11, finding 3 c).

Two twin cases at the same nodes, same rules: one driven with the normal passphrase, the other
with the duress passphrase by a captor. After the duress check-in released the second one (its
policy says `--duress release`), every command the captor forces prints what the normal
passphrase prints for the twin: never "the case is RELEASED".
"""

from __future__ import annotations

import re

from tests.node.conftest import wait_for

from .conftest import DURESS, PW, create_args

NAMES = {PW: "casea", DURESS: "caseb"}


def normalize(text: str, name: str) -> str:
    text = text.replace(name, "CASE")
    text = re.sub(r"case-[0-9a-f]+", "ID", text)
    text = re.sub(r"[0-9a-f]{12,}", "HEX", text)
    return re.sub(r"\d", "0", text)


def test_forced_commands_after_a_duress_release_print_what_the_normal_passphrase_prints(
    v, people, net, tmp_path, clock
):
    nodes = net(2)
    ids = {}
    for pw, name in NAMES.items():
        args = create_args(2, tmp_path / name, "--duress", "release")
        args += ["--editor", "ed1", "--editor", "ed2", "--objection-window", "12h"]
        args[2] = name
        ids[pw] = v.json(people.r, *args)["case_id"]
    # The reporter checks in the twin normally; the captor forces a check-in of the other.
    for pw, name in NAMES.items():
        v.ok(people.r, "checkin", name, passphrase=pw)
    for node in nodes:
        node.wait_state(ids[DURESS], "RELEASED")
    clock.advance(3600)
    steps = [
        ("status", "{}"),
        ("pause", "{}", "--until", "30d"),
        ("status", "{}"),
        ("resume", "{}"),
        ("release", "object", "{}"),
        ("case", "rotate", "{}", "--yes"),
        ("status", "{}"),
        ("checkin", "{}"),
        ("case", "destroy", "{}", "--yes"),
        ("status", "{}"),
    ]
    for step in steps:
        seen = []
        for pw, name in NAMES.items():
            code, out, err = v(people.r, *[a.format(name) for a in step], passphrase=pw)
            seen.append((code, normalize(out, name), normalize(err, name)))
        assert seen[1] == seen[0], (step, *seen)
        assert "RELEASED" not in seen[1][1] + seen[1][2], step
    # The nodes really released the captor's case and hold the twin as the reporter left it.
    for node in nodes:
        assert node.state(ids[DURESS]) == "RELEASED"
        wait_for(lambda node=node: node.state(ids[PW]) == "DESTROYED", what="twin destroyed")


def test_a_case_destroyed_under_duress_comes_back_with_the_normal_passphrase(
    v, people, net, tmp_path
):
    # Given a case whose destruction the captor forced with the duress passphrase
    nodes = net(2)
    case_id = v.json(people.r, *create_args(2, tmp_path))["case_id"]
    v.ok(people.r, "case", "destroy", "inv", "--yes", passphrase=DURESS)
    assert v.json(people.r, "status", "inv", passphrase=DURESS)["cases"][0]["local"] == "destroyed"
    assert [n.state(case_id) for n in nodes] == ["ARMED"] * 2
    # When the reporter, free again, asks for the status with the normal passphrase
    st = v.json(people.r, "status", "inv")["cases"][0]
    # Then the laptop takes the case back, and check-ins work again
    assert st["local"] == "armed"
    assert [n["state"] for n in st["nodes"]] == ["ARMED"] * 2
    v.ok(people.r, "checkin", "inv")


def test_checkin_with_the_normal_passphrase_keeps_a_case_closed_under_duress_alive(
    v, people, net, tmp_path
):
    # Given a case whose release (and then destruction) the captor forced under duress: the
    # nodes answered from their cover and keep the case armed, the laptop marked it closed
    nodes = net(2)
    case_id = v.json(people.r, *create_args(2, tmp_path))["case_id"]
    v.ok(people.r, "release", "now", "inv", "--yes", passphrase=DURESS)
    assert [n.state(case_id) for n in nodes] == ["ARMED"] * 2
    seq_before = [n.query("SELECT seq FROM cases WHERE case_id = ?", case_id)[0][0] for n in nodes]
    # When the reporter, free again, runs a plain `velador checkin` (no status first)
    v.ok(people.r, "checkin")
    # Then the heartbeat reached every node (a skipped case would be released at its deadline)
    seq_after = [n.query("SELECT seq FROM cases WHERE case_id = ?", case_id)[0][0] for n in nodes]
    assert all(a > b for a, b in zip(seq_after, seq_before, strict=True))
    assert v.json(people.r, "status", "inv")["cases"][0]["local"] == "armed"
    # And the same after a destruction forced under duress
    v.ok(people.r, "case", "destroy", "inv", "--yes", passphrase=DURESS)
    assert [n.state(case_id) for n in nodes] == ["ARMED"] * 2
    v.ok(people.r, "checkin", "inv")
    seq_final = [n.query("SELECT seq FROM cases WHERE case_id = ?", case_id)[0][0] for n in nodes]
    assert all(a > b for a, b in zip(seq_final, seq_after, strict=True))


def test_status_and_audit_after_a_forced_release_now_look_like_a_real_one(v, people, net, tmp_path):
    # Review of issue 11, finding 3: after `release now` under duress the status showed the
    # rows as armed and no release banner, while a real `release now` shows both: a tell.
    net(2)
    for name in NAMES.values():
        args = create_args(2, tmp_path / name)
        args[2] = name
        v.json(people.r, *args)
        (tmp_path / f"{name}.md").write_text("notas\n")
        v.ok(people.r, "deposit", name, tmp_path / f"{name}.md")
    for pw, name in NAMES.items():
        v.ok(people.r, "release", "now", name, "--yes", passphrase=pw)
    for step in (("status", "{}"), ("audit", "{}")):
        seen = []
        for pw, name in NAMES.items():
            code, out, err = v(people.r, *[a.format(name) for a in step], passphrase=pw)
            seen.append((code, normalize(out, name), normalize(err, name)))
        assert seen[1] == seen[0], (step, *seen)
