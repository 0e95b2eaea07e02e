"""What a seized laptop holds (issue 11, finding 4; docs/threat-model.md "Finding 4").

The reporter's state.db keeps the share envelopes (arming nodes that missed the registration,
`audit`, `case rotate`), but sealed to the reporter's own key: no recipient's key opens any
row of the raw file, and a node that was down at creation can still be armed later.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3

from nacl.exceptions import CryptoError
from nacl.public import SealedBox

from vault.encoding import b64d
from vault.envelope import open_envelope
from vault.errors import VeladorError
from vault.identity import unlock_identity
from vault.state import DB_FILE, LocalState

from .conftest import OPW, create_args


def raw_rows(home, tmp_path) -> tuple[list[tuple], bytes]:
    """Every row of every table of a copy of the raw state.db (with its WAL), and its bytes."""
    copy = tmp_path / "seized"
    copy.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = home / (DB_FILE + suffix)
        if src.exists():
            shutil.copy(src, copy / (DB_FILE + suffix))
    raw = b"".join(p.read_bytes() for p in copy.iterdir())
    conn = sqlite3.connect(copy / DB_FILE)
    rows = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        rows += conn.execute(f"SELECT * FROM {table}").fetchall()
    conn.close()
    return rows, raw


def opens_with(value, policy, box_key) -> bool:
    """Does this stored value open, as an envelope or as a bare sealed box, with box_key?"""
    candidates = [value]
    with contextlib.suppress(TypeError, ValueError):
        candidates.append(json.loads(value))
    for c in candidates:
        with contextlib.suppress(VeladorError, KeyError, TypeError, ValueError, AttributeError):
            open_envelope(c, policy, box_key)
            return True
        if isinstance(c, str):
            for text in (c, c.split(":", 1)[-1]):
                with contextlib.suppress(VeladorError, CryptoError, ValueError, TypeError):
                    SealedBox(box_key).decrypt(b64d(text, "value"))
                    return True
    return False


def test_no_row_of_the_seized_state_opens_with_a_recipients_key_and_arm_later_works(
    v, people, net, tmp_path
):
    # Given a case created while one of its three nodes is down
    ns = net(3)
    ns[2].kill()
    v.fails(people.r, *create_args(3, tmp_path), code=69)
    policy = LocalState(people.r).case("inv").policy
    outlets = [unlock_identity(h, OPW) for h in people.outlets]
    # When the laptop is seized: no value of any row opens with either recipient's key
    rows, raw = raw_rows(people.r, tmp_path)
    values = [v for row in rows for v in row if isinstance(v, str)]
    assert values
    for o in outlets:
        assert not [x for x in values if opens_with(x, policy, o.box_key)]
    assert b'"envelope"' not in raw and b'"sealed"' not in raw
    # Then the node comes back and `case arm` still registers the envelopes it missed
    ns[2].start()
    assert v.json(people.r, "case", "arm", "inv")["armed"] is True
    assert len(ns[2].query("SELECT * FROM envelopes WHERE case_id = ?", policy.case_id)) == 2
    # And after a deposit, arming and an audit, still nothing in the file opens with a
    # recipient's key.
    (tmp_path / "notas.md").write_text("contratos\n")
    v.ok(people.r, "deposit", "inv", tmp_path / "notas.md")  # audit: a case holding something
    assert v.json(people.r, "audit", "inv")["recoverable"] is True
    rows, raw = raw_rows(people.r, tmp_path)
    for o in outlets:
        assert not [
            x
            for row in rows
            for x in row
            if isinstance(x, str) and opens_with(x, policy, o.box_key)
        ]


def test_a_home_with_plain_envelopes_is_sealed_when_next_opened(v, people, net, tmp_path):
    # Given a case, and its envelopes written back in the plain form of earlier versions
    net(2)
    v.json(people.r, *create_args(2, tmp_path))
    st = LocalState(people.r)
    reporter = unlock_identity(people.r, "reporter passphrase")
    rec = st.case("inv")
    envs = st.envelopes_of(rec.policy, reporter.box_key)
    with st.tx():
        for holder, docs in envs.items():
            for env in docs:
                st.db.execute(
                    "UPDATE envelopes SET envelope = ? WHERE holder = ? AND recipient = ?",
                    [json.dumps(env), holder, env["body"]["recipient"]],
                )
    st.db.conn.close()
    outlet = unlock_identity(people.outlets[0], OPW)
    rows, _ = raw_rows(people.r, tmp_path)
    assert [
        x
        for r in rows
        for x in r
        if isinstance(x, str) and opens_with(x, rec.policy, outlet.box_key)
    ]
    # When any command opens the home again
    v.ok(people.r, "case", "list")
    # Then every envelope is sealed, the old plain copies are gone from the file, and they
    # still open for the reporter.
    rows, raw = raw_rows(people.r, tmp_path)
    assert not [
        x
        for r in rows
        for x in r
        if isinstance(x, str) and opens_with(x, rec.policy, outlet.box_key)
    ]
    assert b'"envelope"' not in raw
    assert LocalState(people.r).envelopes_of(rec.policy, reporter.box_key) == envs
