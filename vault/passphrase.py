"""Passphrases: one canonical form for the KDF, a strength floor, and suggestions (format.md §3.1).

Normalization. The same passphrase typed on two keyboards can reach us as different code points:
"señal" with a precomposed "ñ" (U+00F1, what most keyboards send) or as "n" plus a combining
tilde (U+006E U+0303, what some macOS input methods and copy-pastes send). Argon2id sees bytes,
so without a canonical form the reporter would be locked out of her own identity by her keyboard.
Every passphrase is therefore turned into Unicode NFC, then UTF-8, before the KDF.

Strength. A seized laptop gives the captor the identity file and unlimited offline guesses, slowed
only by Argon2id. zxcvbn (Dropbox's estimator, the maintained Python port) scores a candidate
against dictionaries, names, keyboard patterns and dates; scores below MIN_SCORE are refused where
a person chooses a passphrase (`id new`, `id duress`, `id passphrase`), never when one is typed to
unlock (old identities keep opening).

Suggestions are diceware-style: words drawn with `secrets` from the EFF large word list (English)
or a Spanish list, both shipped by the `xkcdpass` package (BSD; the EFF list is CC BY 3.0). Nothing
is fetched at run time.
"""

from __future__ import annotations

import math
import os
import secrets
import unicodedata
from functools import lru_cache

from .errors import N_, PolicyError

MIN_SCORE = 3
"""Lowest accepted zxcvbn score (0-4); 3 is "safely unguessable: moderate protection from an
offline slow-hash scenario" (about 10^8 guesses or more), which Argon2id then multiplies."""

SUGGESTION_BITS = 76
"""A suggestion carries at least this much entropy: six EFF words (6 x 12.9 bits), five Spanish
ones (5 x 15.4 bits)."""

_ZXCVBN_MAX = 72
"""zxcvbn refuses longer input; a longer passphrase is scored on its first 72 characters."""

_WORDLISTS = {"en": ("eff-long", "[a-z]"), "es": ("spa-mich", "[a-zñ]")}
"""Language -> (xkcdpass word file, allowed letters). Spanish words with accents are left out
so a suggestion can be typed on any keyboard; "ñ" stays (every Spanish layout has it)."""


class WeakPassphraseError(PolicyError):
    """A new passphrase is too easy to guess."""


def normalize(passphrase: str) -> str:
    """The form given to the KDF: Unicode NFC (then UTF-8, done by the caller)."""
    return unicodedata.normalize("NFC", passphrase)


def unlock_forms(passphrase: str) -> list[str]:
    """The forms to try when unlocking, canonical first.

    Identities made before normalization (format.md §3.1) were sealed with the passphrase exactly
    as typed; if that was decomposed, the raw form (typed the same way) or its NFD form (typed
    composed) still opens them. For an ASCII passphrase all three are the same, one KDF run."""
    return list(dict.fromkeys([normalize(passphrase), passphrase, _nfd(passphrase)]))


def _nfd(passphrase: str) -> str:
    return unicodedata.normalize("NFD", passphrase)


def score(passphrase: str, user_inputs: list[str] | None = None) -> int:
    """zxcvbn's score, 0 (trivial) to 4 (very strong), for the normalized passphrase."""
    from zxcvbn import zxcvbn

    text = normalize(passphrase)[:_ZXCVBN_MAX]
    return int(zxcvbn(text, user_inputs=[u for u in user_inputs or [] if u])["score"])


def strength(passphrase: str, user_inputs: list[str] | None = None) -> int:
    """The score `require_strong` judges: zxcvbn's, with "velador" among the words a captor
    tries first. A strength meter shows this one, so that it never calls "strong" what is then
    refused (the browser's meter and `velador id new` count the same words: name and role)."""
    return score(passphrase, [*(user_inputs or []), "velador"])


def require_strong(passphrase: str, user_inputs: list[str] | None = None) -> None:
    """Refuse a new passphrase that zxcvbn scores below MIN_SCORE, suggesting a strong one.

    `user_inputs` are words a captor would try first (the name on the card, "velador")."""
    if not passphrase:
        raise WeakPassphraseError(
            N_("the passphrase must not be empty"), hint=_HINT, suggestion=suggest(language())
        )
    if strength(passphrase, user_inputs) < MIN_SCORE:
        raise WeakPassphraseError(
            N_("this passphrase is too easy to guess: someone who takes your laptop could find it"),
            hint=_HINT,
            suggestion=suggest(language()),
        )


_HINT = N_("use several random words, like this suggestion made just now: %(suggestion)s")


_chosen: str | None = None


def set_language(lang: str | None) -> None:
    """The language the program chose for its messages ('es' or 'en'; cli/i18n.setup calls this
    with --lang or the environment's choice), so that a suggestion is in the words of the
    message that carries it. None forgets the choice."""
    global _chosen
    _chosen = lang if lang in _WORDLISTS else None


def language() -> str:
    """The language of suggestions: the program's choice (`set_language`); without one, 'es'
    when the user's locale variables ask for Spanish, else 'en'."""
    if _chosen is not None:
        return _chosen
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "es" if value.lower().startswith("es") else "en"
    return "en"


@lru_cache(maxsize=2)
def _words(lang: str) -> tuple[str, ...]:
    from xkcdpass import xkcd_password

    name, letters = _WORDLISTS[lang]
    words = xkcd_password.generate_wordlist(
        xkcd_password.locate_wordfile(name), min_length=3, max_length=9, valid_chars=letters
    )
    return tuple(sorted(set(words)))


def suggest(lang: str = "en") -> str:
    """A diceware-style passphrase: random words, space-separated, >= SUGGESTION_BITS of entropy."""
    words = _words(lang if lang in _WORDLISTS else "en")
    count = math.ceil(SUGGESTION_BITS / math.log2(len(words)))
    return " ".join(secrets.choice(words) for _ in range(count))
