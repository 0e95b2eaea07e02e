"""From the reporter's commands to the outlet's recovery, all through the CLI and real nodes:
release by silence, and `velador recover` reading the reporter's case card."""

from __future__ import annotations

from .conftest import DAY, OPW


def same_tree(a, b):
    fa = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    fb = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_silence_releases_and_outlet_recovers_from_case_card(v, armed, clock, tmp_path):
    data = tmp_path / "data" / "puerto"
    data.mkdir(parents=True)
    (data / "notas.md").write_text("contratos inflados, 2019-2024\n")
    (data / "anexo.bin").write_bytes(bytes(range(256)) * 3000)
    v.ok(armed.r, "deposit", "inv", data)
    v.ok(armed.r, "checkin")
    card = v.ok(armed.r, "case", "card", "inv").strip()
    outlet = armed.outlets[0]
    # While the reporter checks in, the outlet gets nothing.
    code, _, err = v(outlet, "recover", card, "--out", tmp_path / "early", passphrase=OPW)
    assert code != 0 and "Traceback" not in err
    # The reporter goes silent: after the deadline and the grace period the nodes release.
    clock.advance(3 * DAY + DAY + 1)
    for node in armed.nodes:
        node.wait_state(armed.case_id, "RELEASED")
    out = tmp_path / "recovered"
    code, _, err = v(outlet, "recover", card, "--out", out, passphrase=OPW)
    assert code == 0, err
    same_tree(data, out / "puerto")
