"""bench/report_peers.py: issue 14's verdicts follow the saved numbers, both ways, and the peers
and slow-link sections render from saved JSON (no benchmark runs, no matplotlib)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from report_data import Result  # noqa: E402
from report_peers import peers_verdicts, section_peers, section_slowlink  # noqa: E402


def tool(cold: float, unchanged: float | None, restore: float, stored: int) -> dict:
    return {
        "version": "x",
        "cold": {"s": cold, "rss_mib": 50},
        "unchanged": None if unchanged is None else {"s": unchanged, "rss_mib": 40},
        "restore": {"s": restore, "rss_mib": 60},
        "stored_bytes": stored,
        "identical": True,
    }


def peers_result(velador: dict) -> Result:
    figures = {
        "tree": {"bytes": 2**30, "files": 2001, "folders": 40},
        "runs": 2,
        "missing": {},
        "tools": {
            "velador": velador,
            "restic": tool(8.0, 0.7, 4.5, 909_000_000),
            "borg": tool(5.0, 0.5, 7.9, 1_032_000_000),
            "tar | age": tool(4.1, None, 2.3, 1_075_000_000),
        },
    }
    meta = {"returncode": 0, "command": "bench/peers.py", "load_before": "1, 1, 1"}
    return Result("peers", "peers", {}, meta, figures)


def test_verdicts_follow_the_numbers_both_ways():
    good = peers_verdicts([peers_result(tool(3.5, 0.4, 4.0, 900_000_000))])
    assert [v.met for v in good] == [True, True, True, True]
    bad = peers_verdicts([peers_result(tool(4.2, 0.9, 5.6, 1_076_000_000))])
    assert [v.met for v in bad] == [False, False, False, False]
    assert "velador 5.60 s vs restic 4.50 s" in bad[0].measured
    assert "tar \\| age" in bad[2].measured  # the fastest peer named, escaped for the table


def test_the_sections_render_and_say_when_not_measured():
    page = "\n".join(section_peers([peers_result(tool(3.5, 0.4, 4.0, 900_000_000))], None))
    assert "| recover / restore | 4.00 s | 4.50 s | 7.90 s | 2.30 s |" in page
    assert "tar \\| age" in page and "fsync" in page
    assert "Not measured" in "\n".join(section_peers([], None))
    assert "Not measured" in "\n".join(section_slowlink([]))
    slow = {
        "tree": {"bytes": 64 * 2**20},
        "links": [
            {
                "link_mb_s": 4,
                "velador": {
                    "s": 20.0,
                    "up_bytes": 67e6,
                    "mb_s": 3.3,
                    "requests": {"LIST": 1, "PUT": 540},
                    "link_busy_s": 15.0,
                    "first_body_s": 1.0,
                    "max_uploads_in_flight": 1,
                },
                "restic": {"s": 15.0, "up_bytes": 56e6, "mb_s": 3.7},
            }
        ],
        "limited": {"link_mb_s": 1, "limit_kib_s": 488, "velador": {"mb_s": 0.49}},
        "drop": {"cut_after_bytes": 33e6, "objects_resent": 1, "bytes_resent": 1.2e6},
    }
    text = "\n".join(
        section_slowlink([Result("slowlink", "slowlink", {}, {"returncode": 0}, slow)])
    )
    assert "| 4 MB/s | 20.0 | 67.0 | 15.0 | 56.0 |" in text
    assert "sent 1 object(s) again, 1.20 MB" in text
    # where the time goes, when the benchmark measured it (velador here, not restic)
    assert "- 4 MB/s, velador: 1 LIST, 540 PUT; the link carried request bodies 15.0 s" in text
    assert "restic: " not in text
