"""`velador node restore` (docs/protocol.md §6.3): an old backup must not release a case whose
reporter kept checking in after it was taken."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from cli.node_cmds import node as node_cli
from tests.node.builders import T0
from vault.nodeproto.messages import make_heartbeat

pytestmark = pytest.mark.integration
EVERY, GRACE = 3600, 600


def online_backup(db_path, dest) -> None:
    src = sqlite3.connect(str(db_path))
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def test_restore_rearms_so_lost_checkins_cause_no_release(nodes, world_for, clock, tmp_path):
    # Given a single-node case (no peer can tell the node about newer heartbeats)
    n = nodes("node-r")
    w = world_for(n.card, every=EVERY, grace=GRACE, remind=())
    rep = n.client(w.reporter)
    rep.register_case(w.policy, w.envs_for(n.card))
    clock.set(T0 + 100)
    rep.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))
    # and a backup taken while the node runs, after which the reporter checks in again
    backup = tmp_path / "node-backup.db"
    online_backup(n.dir / "node.db", backup)
    clock.set(T0 + 3000)
    rep.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 2, clock.now()))
    assert n.term() == 0
    # When the node is restored from that backup at a time when the backup's deadline and grace
    # are over (but not the real ones)
    clock.set(T0 + 100 + EVERY + GRACE + 10)
    res = CliRunner().invoke(node_cli, ["restore", "--data", str(n.dir), str(backup)])
    assert res.exit_code == 0, res.output
    n.start()
    # Then the start-up sweep does not release it, and the restore is in the audit log
    assert n.state(w.policy.case_id) == "ARMED"
    assert "re-armed 1 case to" in res.output
    rows = n.query("SELECT event FROM audit WHERE case_id = ? ORDER BY seq", w.policy.case_id)
    assert [r[0] for r in rows][-1] == "restore"
    assert n.query("SELECT seq FROM cases")[0][0] == 1  # the state is the backup's


def test_restore_refuses_a_file_that_is_not_a_node_database(nodes, tmp_path):
    n = nodes("node-s", start=False)
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not a database at all" * 100)
    res = CliRunner().invoke(node_cli, ["restore", "--data", str(n.dir), str(bogus)])
    assert res.exit_code != 0
    assert not (n.dir / "node.db").exists()
