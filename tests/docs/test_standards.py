"""docs/standards/: the copies of external specifications are the bytes their README names."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "docs" / "standards"
ROW = re.compile(r"^\| `([^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{64})` \|$", re.M)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_every_copy_matches_its_recorded_digests():
    rows = ROW.findall((STANDARDS / "README.md").read_text())
    assert len(rows) >= 9
    for name, blob, sha in rows:
        data = (STANDARDS / name).read_bytes()
        assert git_blob_id(data) == blob, name
        assert hashlib.sha256(data).hexdigest() == sha, name
    copies = {p.name for p in STANDARDS.iterdir() if p.is_file() and p.name != "README.md"}
    assert copies == {name for name, _, _ in rows}


def test_the_slip39_word_list_is_the_one_the_code_uses():
    from shamir_mnemonic.wordlist import WORDLIST

    words = (STANDARDS / "slip-0039-wordlist.txt").read_text().split()
    assert len(words) == 1024 and words == list(WORDLIST)


def test_format_md_names_the_standards():
    text = (ROOT / "docs" / "format.md").read_text()
    for name in ("docs/standards/age-v1.md", "docs/standards/README.md"):
        assert name in text
