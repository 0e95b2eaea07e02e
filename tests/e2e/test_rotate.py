"""`velador case rotate`: new key, re-split, re-registered at every real node; deposits made
before and after the rotation are all readable after a release (through the keyring)."""

from __future__ import annotations

from vault.case import open_keyring
from vault.envelope import open_envelope
from vault.identity import unlock_identity
from vault.nodeproto.client import NodeClient
from vault.objects import keyring_key
from vault.recover import restore
from vault.shares import age_identity_str, combine_any
from vault.state import LocalState
from vault.stores import open_store

from .conftest import OPW


def test_rotate_then_release_recovers_every_deposit(v, armed, clock, tmp_path):
    a = tmp_path / "data" / "antes"
    a.mkdir(parents=True)
    (a / "old.txt").write_text("deposited under the first key\n")
    v.ok(armed.r, "deposit", "inv", a)
    v.ok(armed.r, "checkin")
    old = LocalState(armed.r).case("inv").policy
    old_envs = [
        n.query("SELECT envelope FROM envelopes WHERE case_id = ?", armed.case_id)
        for n in armed.nodes
    ]

    info = v.json(armed.r, "case", "rotate", "inv", "--yes")
    assert info["armed"] is True and info["replaces"] == old.hash
    new = LocalState(armed.r).case("inv").policy
    assert new.replaces == old.hash and new.release_recipient != old.release_recipient
    for node, before in zip(armed.nodes, old_envs, strict=True):
        row = node.query("SELECT policy_hash FROM cases WHERE case_id = ?", armed.case_id)[0]
        assert row[0] == new.hash
        now = node.query("SELECT envelope FROM envelopes WHERE case_id = ?", armed.case_id)
        assert len(now) == 2 and {r[0] for r in now}.isdisjoint({r[0] for r in before})
    for store in ("storeA", "storeB"):
        assert (tmp_path / store / keyring_key(armed.case_id, new.hash)).is_file()

    b = tmp_path / "data" / "despues"
    b.mkdir(parents=True)
    (b / "new.txt").write_text("deposited under the second key\n")
    v.ok(armed.r, "deposit", "inv", b)
    out = v.json(armed.r, "checkin")
    assert [n["ok"] for n in out["cases"][0]["nodes"]] == [True] * 3
    v.ok(armed.r, "release", "now", "inv", "--yes")

    # The outlet: K released shares give the new key; the keyring gives the old one.
    outlet = unlock_identity(armed.outlets[0], OPW)
    mnemonics = []
    for node in armed.nodes:
        with NodeClient(node.card, outlet, clock) as c:
            rel = c.fetch_release(armed.case_id)
        mnemonics += [open_envelope(e, rel.policy, outlet.box_key).mnemonic for e in rel.envelopes]
    new_secret, _ = combine_any(mnemonics, new.release_recipient)
    blob = open_store(f"file://{tmp_path / 'storeB'}").get(keyring_key(armed.case_id, new.hash))
    prev, old_secret = open_keyring(blob, new, new_secret, outlet.box_key)
    assert prev.hash == old.hash
    target = tmp_path / "recovered"
    restore(
        new,
        [age_identity_str(new_secret), age_identity_str(old_secret)],
        list(new.stores),
        target,
    )
    assert (target / "antes" / "old.txt").read_text() == "deposited under the first key\n"
    assert (target / "despues" / "new.txt").read_text() == "deposited under the second key\n"


def test_rotate_refuses_a_destroyed_case(v, armed):
    v.ok(armed.r, "case", "destroy", "inv", "--yes")
    line, _ = v.fails(armed.r, "case", "rotate", "inv", "--yes", code=75)
    assert line == "velador: error: cannot rotate: case inv was destroyed"


def _rotate_between_two_deposits(v, armed, tmp_path):
    a = tmp_path / "data" / "antes"
    a.mkdir(parents=True)
    (a / "old.txt").write_text("deposited under the first key\n")
    v.ok(armed.r, "deposit", "inv", a)
    old = LocalState(armed.r).case("inv").policy
    v.ok(armed.r, "case", "rotate", "inv", "--yes")
    new = LocalState(armed.r).case("inv").policy
    b = tmp_path / "data" / "despues"
    b.mkdir(parents=True)
    (b / "new.txt").write_text("deposited under the second key\n")
    v.ok(armed.r, "deposit", "inv", b)
    card = v.ok(armed.r, "case", "card", "inv").strip()
    v.ok(armed.r, "release", "now", "inv", "--yes")
    return old, new, card


def test_velador_recover_reads_deposits_from_before_a_rotation(v, armed, tmp_path):
    """The outlet's own command walks the keyring; the exported key file opens both eras."""
    old, new, card = _rotate_between_two_deposits(v, armed, tmp_path)
    out = tmp_path / "recovered"
    key = tmp_path / "case.key"
    v.ok(armed.outlets[0], "recover", card, "--out", out, "--export-key", key, passphrase=OPW)
    assert (out / "antes" / "old.txt").read_text() == "deposited under the first key\n"
    assert (out / "despues" / "new.txt").read_text() == "deposited under the second key\n"
    idents = [ln for ln in key.read_text().splitlines() if ln.startswith("AGE-SECRET-KEY-")]
    pubs = [ln.split(": ")[1] for ln in key.read_text().splitlines() if "public key" in ln]
    assert len(idents) == 2
    assert pubs == [new.release_recipient, old.release_recipient]


def test_a_lost_keyring_loses_only_the_older_deposits_and_says_so(v, armed, tmp_path):
    _, new, card = _rotate_between_two_deposits(v, armed, tmp_path)
    for store in ("storeA", "storeB"):
        (tmp_path / store / keyring_key(armed.case_id, new.hash)).unlink()
    out = tmp_path / "recovered"
    code, stdout, err = v(armed.outlets[0], "recover", card, "--out", out, passphrase=OPW)
    assert code == 0, err
    assert (out / "despues" / "new.txt").read_text() == "deposited under the second key\n"
    assert not (out / "antes").exists()
    assert f"deposits made before policy {new.hash[:12]} cannot be read" in stdout + err
