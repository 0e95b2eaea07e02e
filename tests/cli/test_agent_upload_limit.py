"""The agent's deposits keep to the home's upload limit (issue 12, "Ongoing work": deposits from
the agent respect `--limit-upload`), as `velador deposit` does without the option."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from cli.agent_deposits import DepositWorker, Job, Outcome
from vault import case as C
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock
from vault.stores import ratelimit


@pytest.fixture
def home_case(tmp_path: Path):
    home = tmp_path / "home"
    rep = identity.create_identity(home, "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(home)
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        [f"file://{tmp_path / 'store'}"],
        FakeClock(),
        offline_dir=tmp_path / "usb",
    )
    C.register_locally(st, rep, "caso", nc, {})
    st.db.conn.close()
    return home, rep, nc


@pytest.mark.parametrize(("config", "want"), [(None, None), (512, 512 * 1024)])
def test_the_agent_deposits_under_the_homes_upload_limit(
    home_case, tmp_path, monkeypatch, config, want
):
    home, rep, _nc = home_case
    if config is not None:
        (home / "config.toml").write_text(f"[network]\nlimit_upload = {config}\n")
    # Every deposit installs its limit through ratelimit.limited(): record what it was given.
    seen: list[float | None] = []
    real = ratelimit.limited

    def spy(rate):
        seen.append(rate)
        return real(rate)

    monkeypatch.setattr(ratelimit, "limited", spy)  # vault.deposit imports it when it runs
    src = tmp_path / "watched"
    src.mkdir()
    (src / "nota.txt").write_text("entrevista\n")
    outcomes: queue.Queue[Outcome] = queue.Queue()
    worker = DepositWorker(home, FakeClock(), outcomes.put)
    try:
        case_id = S.LocalState(home).case("caso").case_id
        worker.submit(Job(case_id, [(1, src)], rep, "change"))
        outcome = outcomes.get(timeout=120)
    finally:
        worker.stop()
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.new_chunks == 1
    assert seen == [want]
