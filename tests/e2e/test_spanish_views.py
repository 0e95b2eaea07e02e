"""The reporter's views in Spanish leave no English sentence (issue 12, "Spanish and local time").

With VELADOR_LANG=es, after a real release by silence at three real nodes: `status`, `case list`,
`case show`, `audit` (of the released case), `contact list` and `id show`. The same commands in
English are the control: the check below must find English there, or it proves nothing.

How "no English sentence" is checked (a heuristic, written down so it can be argued with):
1. Mask what is not language: the data the reader typed or was given (the case, node, contact
   and person names of this test, paths and URLs, fingerprints, hashes, ids and card text, any
   token of 20 characters or more), and text in single quotes, which is always a command to
   type ('velador status inv'): command and option names stay English in both languages.
2. Split the rest into words and look each up in ENGLISH: common English words that are not
   Spanish words ("the", "not", "is", "was", "your"...) and the English words of Velador's own
   vocabulary ("case", "node", "release", "deposit", "store", "share"...), day and month names.
   Words spelled alike in both languages ("no", "a", "editor", "error", "alias", "id") are left
   out, so a hit is English for sure. Any hit fails, with the line it is in.
"""

from __future__ import annotations

import re

import pytest

from .conftest import DAY
from .test_release_views import silence_until_released

ENGLISH = set(
    [
        "the",
        "not",
        "is",
        "was",
        "were",
        "are",
        "and",
        "of",
        "to",
        "your",
        "you",
        "with",
        "for",
        "this",
        "that",
        "have",
        "been",
        "from",
        "by",
        "at",
        "if",
        "or",
        "but",
        "what",
        "which",
        "when",
        "who",
        "will",
        "could",
        "would",
        "can",
        "should",
        "must",
        "every",
        "none",
        "any",
        "all",
        "only",
        "still",
        "case",
        "cases",
        "node",
        "nodes",
        "release",
        "released",
        "releases",
        "releasing",
        "check",
        "checked",
        "checking",
        "deposit",
        "deposited",
        "deposits",
        "store",
        "stores",
        "share",
        "shares",
        "key",
        "keys",
        "yes",
        "ago",
        "now",
        "armed",
        "state",
        "last",
        "next",
        "deadline",
        "never",
        "held",
        "missing",
        "objects",
        "recipient",
        "recipients",
        "split",
        "switch",
        "holders",
        "fingerprint",
        "name",
        "role",
        "created",
        "home",
        "card",
        "offline",
        "answered",
        "custody",
        "days",
        "day",
        "hours",
        "hour",
        "minutes",
        "minute",
        "week",
        "weeks",
        "outlet",
        "outlets",
        "reporter",
        "escrow",
        "snapshot",
        "snapshots",
        "policy",
        "hash",
        "answer",
        "asked",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "jan",
        "apr",
        "aug",
        "dec",
        "usage",
        "options",
    ]
)


def english_words(text: str, data: list[str]) -> list[tuple[str, str]]:
    """(word, line) for every English word left after masking (see the module docstring)."""
    hits = []
    for line in text.splitlines():
        masked = re.sub(r"'[^'\n]*'", " ", line)  # commands to type
        masked = re.sub(r"\S*://\S*|(?<!\w)/\S+", " ", masked)  # URLs and paths
        for item in sorted(data, key=len, reverse=True):
            masked = masked.replace(item, " ")
        masked = re.sub(r"\b[A-Z0-9]{4}(-[A-Z0-9]{4}){3}\b", " ", masked)  # fingerprints
        masked = re.sub(r"\S{20,}", " ", masked)  # hashes, ids, card text
        for word in re.findall(r"[^\W\d_]+", masked):
            if word.lower() in ENGLISH:
                hits.append((word, line.strip()))
    return hits


COMMANDS = [
    ("status", "inv"),
    ("case", "list"),
    ("case", "show", "inv"),
    ("audit", "inv"),
    ("contact", "list"),
    ("id", "show"),
]


def test_the_reporters_views_in_spanish_have_no_english_left(
    v, armed, clock, mexico_time, monkeypatch, tmp_path
):
    monkeypatch.setenv("COLUMNS", "200")  # wide tables: no word folded across lines
    (tmp_path / "notas.md").write_text("notas\n")
    v.ok(armed.r, "deposit", "inv", tmp_path / "notas.md")
    silence_until_released(armed, clock)
    clock.advance(DAY)
    data = [
        armed.case_id,
        "Rita Reporter",
        "Diario sur",
        "Diario norte",
        "Editor ed1",
        "Editor ed2",
        *(f"node-{c}" for c in "abc"),
        *(f"n{i}" for i in (1, 2, 3)),
        "ed1",
        "ed2",
        "sur",
        "norte",
        "inv",
        "CST",
    ]

    def run(lang: str) -> dict[tuple[str, ...], str]:
        monkeypatch.setenv("VELADOR_LANG", lang)
        seen = {}
        for args in COMMANDS:
            code, out, err = v(armed.r, *args)
            assert code == 0, (args, err)
            seen[args] = out + err
        return seen

    english = run("en")
    spanish = run("es")
    for args in COMMANDS:
        # The control: each English view is caught by the check, so the check can see.
        assert len(english_words(english[args], data)) >= 3, (args, english[args])
        hits = english_words(spanish[args], data)
        assert hits == [], (args, hits, spanish[args])
    # And the views say what they must, in Spanish.
    assert "El caso inv se LIBERÓ el dom 4 ene 18:00 CST (hace 1 día)" in spanish[("status", "inv")]
    assert "sí: el caso se liberó, y cada objeto está en algún almacén" in spanish[("audit", "inv")]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("El caso inv se liberó el dom 4 ene 18:00 CST", []),
        ("Case inv was RELEASED on Sun 4 Jan", ["Case", "was", "RELEASED", "Sun", "Jan"]),
        ("ejecuta 'velador case show inv' para verlo", []),
        ("huella ABCD-EFGH-2345-WXYZ, almacén file:///tmp/store/case", []),
    ],
)
def test_the_english_check_itself(text, found):
    assert [w for w, _line in english_words(text, ["inv"])] == found
