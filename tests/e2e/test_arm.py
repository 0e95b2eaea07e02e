"""`velador case create --node ...`, `case arm`, `case card`: arming at real node processes."""

from __future__ import annotations

from vault.case import SHARE_SUFFIX
from vault.state import LocalState
from vault.switch import parse_case_card

from .conftest import create_args


def test_create_arms_every_node(v, armed, tmp_path):
    # Given three nodes in the reporter's contacts, when the case is created,
    # then every node holds the case, ARMED, with its two envelopes (one share, two recipients).
    for node in armed.nodes:
        assert node.state(armed.case_id) == "ARMED"
        assert len(node.query("SELECT * FROM envelopes WHERE case_id = ?", armed.case_id)) == 2
    assert {n["state"] for n in armed.info["node_states"]} == {"registered"}
    show = v.json(armed.r, "case", "show", "inv")
    assert show["switch"] == "armed"
    assert len([h for h in show["holders"] if "node" in h]) == 3


def test_contact_add_accepts_node_cards(v, people, net):
    net(1)
    rows = v.json(people.r, "contact", "list")
    node = next(r for r in rows if r["alias"] == "n1")
    assert node["role"] == "node"
    assert node["url"].startswith("http://127.0.0.1:")


def test_unreachable_node_leaves_case_arming_then_arm_finishes(v, people, net, tmp_path):
    ns = net(3)
    ns[2].kill()
    # When one node is down at creation, the command fails with a line naming it...
    line, hint = v.fails(people.r, *create_args(3, tmp_path), code=69)
    assert line.startswith("velador: error: case inv is NOT armed: 2 of 3 nodes have it; node-c ")
    assert "unreachable" in line
    assert hint == "velador: hint: run 'velador case arm inv' to finish when the node is back"
    # ...the case is recorded as "arming", with each node's state.
    assert v.json(people.r, "case", "show", "inv")["switch"] == "arming"
    # Re-running the same create while the node is still down reports the same.
    line2, _ = v.fails(people.r, *create_args(3, tmp_path), code=69)
    assert line2.startswith("velador: error: case inv is NOT armed: 2 of 3 nodes have it")
    # When the node is back, `case arm` completes it.
    ns[2].start()
    rep = v.json(people.r, "case", "arm", "inv")
    assert rep["armed"] is True
    assert [n["state"] for n in rep["nodes"]] == ["registered"] * 3
    case_id = rep["case_id"]
    assert all(n.state(case_id) == "ARMED" for n in ns)
    # Arming again is a no-op.
    assert v.json(people.r, "case", "arm", "inv")["armed"] is True


def test_rerun_create_completes_arming(v, people, net, tmp_path):
    ns = net(2)
    ns[1].kill()
    v.fails(people.r, *create_args(2, tmp_path), code=69)
    ns[1].start()
    code, _, err = v(people.r, *create_args(2, tmp_path))
    assert code == 0, err
    assert "finishing its registration" in err
    assert "Case inv is armed at all 2 nodes." in err


def test_offline_holders_beside_nodes(v, people, net, tmp_path):
    # Two nodes plus one offline share: 2 of 3.
    net(2)
    info = v.json(
        people.r,
        *create_args(2, tmp_path, "--shares", "3", "--offline-dir", tmp_path / "usb"),
    )
    assert info["armed"] is True
    assert info["split"] == "2 of 3"
    assert len(list((tmp_path / "usb").glob(f"*{SHARE_SUFFIX}"))) == 1


def test_case_card_round_trip(v, armed):
    line = v.ok(armed.r, "case", "card", "inv")
    assert line.count("\n") == 1 and line.startswith("velador:case:v1:")
    card = parse_case_card(line)
    assert card.case_id == armed.case_id
    policy = LocalState(armed.r).case("inv").policy
    assert card.policy_hash == policy.hash
    assert [c.fingerprint for c in card.nodes] == [n.card.fingerprint for n in armed.nodes]
    assert card.stores == policy.stores
    assert v.json(armed.r, "case", "card", "inv")["case_card"] == line.strip()


def test_case_card_parse_errors():
    import pytest

    from vault.errors import FormatError

    with pytest.raises(FormatError) as e:
        parse_case_card("velador:card:v1:abc")
    assert e.value.message == "this is not a case card (it should start with 'velador:case:v1:')"
    with pytest.raises(FormatError) as e:
        parse_case_card("velador:case:v1:not-base64!")
    assert e.value.message == "this case card is malformed"


def test_create_bad_inputs(v, people, net, tmp_path):
    net(2)
    r = people.r
    base = create_args(2, tmp_path)

    def err(*args):
        line, _ = v.fails(r, *args, code=75)
        return line

    i = base.index("--every")
    bad_every = [*base[: i + 1], "3x", *base[i + 2 :]]
    assert err(*bad_every) == "velador: error: --every '3x' is not a duration"
    no_unit = [*base[: i + 1], "90", *base[i + 2 :]]
    assert err(*no_unit) == "velador: error: --every '90' has no unit"
    no_every = [*base[:i], *base[i + 2 :]]
    assert err(*no_every) == "velador: error: a case with escrow nodes needs --every and --grace"
    j = base.index("--remind")
    long_remind = [*base[: j + 1], "4d", *base[j + 2 :]]
    assert err(*long_remind) == (
        "velador: error: a reminder 345600 s before the deadline is not inside the 3d interval"
    )
    assert err(*base, "--editor", "sur") == (
        "velador: error: sur is not an editor (its role is outlet)"
    )
    assert err(*base, "--editor", "ed1", "--editor-quorum", "3") == (
        "velador: error: --editor-quorum must be between 1 and 1"
    )
    k = base.index("--node")
    as_node = [*base[: k + 1], "sur", *base[k + 2 :]]
    assert err(*as_node) == "velador: error: sur is not a node (its role is outlet)"
    line, _ = v.fails(r, "case", "create", "x", "--recipient", "sur", "--every", "1d", code=75)
    assert line == "velador: error: deadlines and editors need escrow nodes"
    line, _ = v.fails(r, *[*base[: k + 1], "nobody", *base[k + 2 :]], code=66)
    assert line == "velador: error: no contact named 'nobody'"
    # Nothing was created by any of these.
    assert v.json(r, "case", "list") == []


def test_no_node_reachable_at_create(v, people, net, tmp_path):
    ns = net(2)
    for n in ns:
        n.kill()
    line, _ = v.fails(people.r, *create_args(2, tmp_path), code=69)
    assert line.startswith("velador: error: case inv is NOT armed: 0 of 2 nodes have it; node-a ")
    line, _ = v.fails(people.r, "checkin", code=75)
    assert line == "velador: error: no armed case to check in"
    line, hint = v.fails(people.r, "checkin", "inv", code=75)
    assert line == "velador: error: case inv is not registered at any node yet"
    assert hint == "velador: hint: run 'velador case arm inv' first"
    code, _, err = v(people.r, "checkin", "--timeout", "0")
    assert code == 2 and "Invalid value for '--timeout'" in err


def test_node_refuses_then_arm_completes(v, people, net, tmp_path, monkeypatch):
    import vault.switch

    ns = net(3)
    real = vault.switch.node_envelopes

    def short_for_b(policy, envelopes, node):
        envs = real(policy, envelopes, node)
        return envs[:1] if node.name == "node-b" else envs

    # node-b gets one envelope too few and refuses the registration (400).
    monkeypatch.setattr(vault.switch, "node_envelopes", short_for_b)
    line, _ = v.fails(people.r, *create_args(3, tmp_path), code=69)
    assert line == (
        "velador: error: case inv is NOT armed: 2 of 3 nodes have it; node-b refused (node "
        "node-b: expected 2 envelopes (each of this node's shares for each recipient), got 1 "
        "matching ones)"
    )
    monkeypatch.setattr(vault.switch, "node_envelopes", real)
    assert v.json(people.r, "case", "arm", "inv")["armed"] is True
    assert ns[1].state(LocalState(people.r).case("inv").case_id) == "ARMED"


def test_interrupted_create_is_recorded_as_arming(v, people, net, tmp_path, monkeypatch):
    import cli.case_cmds

    net(2)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    # The laptop dies right after the case is recorded, before any node is asked.
    real = cli.case_cmds.arm
    monkeypatch.setattr(cli.case_cmds, "arm", crash)
    code, _, err = v(people.r, *create_args(2, tmp_path))
    assert code == 130
    assert err.strip() == "velador: error: interrupted"
    monkeypatch.setattr(cli.case_cmds, "arm", real)
    assert v.json(people.r, "case", "show", "inv")["switch"] == "arming"
    assert v.json(people.r, "case", "arm", "inv")["armed"] is True
