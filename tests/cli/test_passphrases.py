"""Passphrase rules through the real CLI (issue 12 §5, §9; docs/format.md §3.1).

Passphrases are given the way every test gives them: in VELADOR_PASSPHRASE (and
VELADOR_DURESS_PASSPHRASE / VELADOR_NEW_PASSPHRASE), never in argv.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import pytest

from vault.encoding import b64d, b64e
from vault.identity import IDENTITY_FILE, unlock_identity

from .test_cli import PW, Velador

NFC = unicodedata.normalize("NFC", "Señal cañón pingüino áéíóú mañana")
NFD = unicodedata.normalize("NFD", NFC)


@pytest.fixture
def v(capsys):
    return Velador(capsys)


def run(v: Velador, home: Path, *args: str, passphrase: str = PW, **env: str):
    """(code, stdout, stderr) of one command with extra environment variables."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return v(home, *args, passphrase=passphrase)
    finally:
        for k, val in old.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val


def ok(v: Velador, home: Path, *args: str, passphrase: str = PW, **env: str) -> str:
    code, _, err = run(v, home, *args, passphrase=passphrase, **env)
    assert code == 0, err
    return err


def suggestion(err: str) -> str:
    """The passphrase the hint suggests (after 'made just now: ')."""
    hint = next(line for line in err.splitlines() if line.startswith("velador: hint:"))
    return hint.split("made just now: ", 1)[1].strip()


def test_weak_passphrase_is_refused_with_a_suggestion_that_works(v, tmp_path):
    # Given a new home, when the reporter picks "abc"
    home = tmp_path / "r"
    code, _, err = v(home, "id", "new", "--name", "Rita Reporter", passphrase="abc")
    # Then it is refused, nothing is written, and a strong passphrase is suggested
    assert code == 75
    assert err.splitlines()[0] == (
        "velador: error: this passphrase is too easy to guess: someone who takes your laptop "
        "could find it"
    )
    assert not (home / IDENTITY_FILE).exists()
    words = suggestion(err).split()
    assert len(words) >= 5
    # And the suggestion itself is accepted
    v.ok(home, "id", "new", "--name", "Rita Reporter", passphrase=" ".join(words))


def test_name_as_passphrase_is_weak(v, tmp_path):
    code, _, err = v(tmp_path / "r", "id", "new", "--name", "Rita Reporter", passphrase="Rita2026")
    assert code == 75 and "too easy to guess" in err


def test_spanish_locale_suggests_spanish_words(v, tmp_path):
    code, _, err = run(
        v,
        tmp_path / "r",
        "id",
        "new",
        "--name",
        "Rita",
        passphrase="1234",
        LANG="es_MX.UTF-8",
        LANGUAGE="es",
        VELADOR_LANG="",  # tests/conftest.py's "en" outranks LANG (cli/i18n.py)
    )
    assert code == 75
    from vault.passphrase import _words

    hint = err.strip().splitlines()[-1]  # Spanish throughout, the suggestion too
    assert hint.startswith("velador: sugerencia: usa varias palabras al azar")
    assert all(w in _words("es") for w in hint.rsplit(": ", 1)[1].split())


def test_weak_duress_passphrase_is_refused(v, tmp_path):
    home = tmp_path / "r"
    v.ok(home, "id", "new", "--name", "Rita Reporter")
    code, _, err = run(v, home, "id", "duress", VELADOR_DURESS_PASSPHRASE="rita")
    assert code == 75 and "too easy to guess" in err
    ok(v, home, "id", "duress", VELADOR_DURESS_PASSPHRASE="tulip orbit gravel cement")
    assert unlock_identity(home, "tulip orbit gravel cement").duress


def test_passphrase_change(v, tmp_path):
    home = tmp_path / "r"
    v.ok(home, "id", "new", "--name", "Rita Reporter")
    ok(v, home, "id", "duress", VELADOR_DURESS_PASSPHRASE="tulip orbit gravel cement")
    # A weak new passphrase is refused and the old one still opens
    code, _, err = run(v, home, "id", "passphrase", VELADOR_NEW_PASSPHRASE="password1")
    assert code == 75 and "too easy to guess" in err
    assert not unlock_identity(home, PW).duress
    # The duress passphrase cannot become the normal one too (both slots would open with it)
    code, _, err = run(
        v, home, "id", "passphrase", VELADOR_NEW_PASSPHRASE="tulip orbit gravel cement"
    )
    assert code == 77 and "cannot be used" in err
    # A strong one replaces the normal passphrase; the duress one is kept
    new = "lantern quarry mosaic heron"
    ok(v, home, "id", "passphrase", VELADOR_NEW_PASSPHRASE=new)
    assert not unlock_identity(home, new).duress
    assert unlock_identity(home, "tulip orbit gravel cement").duress
    code, _, err = v(home, "id", "passphrase", passphrase=PW)
    assert code == 77 and "wrong passphrase" in err


def test_decomposed_accents_open_with_composed(v, tmp_path):
    # Given an identity made with a passphrase typed in decomposed form (NFD, macOS-style)
    home = tmp_path / "r"
    assert NFC != NFD
    v.ok(home, "id", "new", "--name", "Rita Reporter", passphrase=NFD)
    # When she types it composed (NFC) on another keyboard, it opens
    ok(
        v,
        home,
        "id",
        "duress",
        passphrase=NFC,
        VELADOR_DURESS_PASSPHRASE="tulip orbit gravel cement",
    )
    assert not unlock_identity(home, NFD).duress
    # And the other way round: made composed, opened decomposed
    other = tmp_path / "o"
    v.ok(other, "id", "new", "--name", "Diario Sur", "--role", "outlet", passphrase=NFC)
    ok(
        v,
        other,
        "id",
        "duress",
        passphrase=NFD,
        VELADOR_DURESS_PASSPHRASE="tulip orbit gravel cement",
    )


def test_identity_sealed_before_normalization_still_opens(v, tmp_path):
    # Given an identity whose slot was sealed, as before format.md §3.1, with the raw NFD bytes
    home = tmp_path / "r"
    v.ok(home, "id", "new", "--name", "Rita Reporter", passphrase=NFC)
    plain = _open_slots(home, NFC)
    doc = json.loads((home / IDENTITY_FILE).read_text())
    slot = next(s for s in doc["slots"] if _try(s, NFC) is not None)
    salt = os.urandom(nacl.pwhash.argon2id.SALTBYTES)
    key = nacl.pwhash.argon2id.kdf(
        32, NFD.encode(), salt, opslimit=slot["ops"], memlimit=slot["mem"]
    )
    slot["salt"], slot["box"] = b64e(salt), b64e(bytes(nacl.secret.SecretBox(key).encrypt(plain)))
    (home / IDENTITY_FILE).write_text(json.dumps(doc))
    # Then it opens typed decomposed (as made) and composed
    assert unlock_identity(home, NFD).fingerprint == unlock_identity(home, NFC).fingerprint
    ok(
        v,
        home,
        "id",
        "duress",
        passphrase=NFC,
        VELADOR_DURESS_PASSPHRASE="tulip orbit gravel cement",
    )


def _try(slot: dict, passphrase: str) -> bytes | None:
    salt = b64d(slot["salt"], "salt")
    key = nacl.pwhash.argon2id.kdf(
        32, passphrase.encode(), salt, opslimit=slot["ops"], memlimit=slot["mem"]
    )
    try:
        return nacl.secret.SecretBox(key).decrypt(b64d(slot["box"], "box"))
    except nacl.exceptions.CryptoError:
        return None


def _open_slots(home: Path, passphrase: str) -> bytes:
    doc = json.loads((home / IDENTITY_FILE).read_text())
    return next(p for s in doc["slots"] if (p := _try(s, passphrase)) is not None)


def test_id_new_on_existing_identity_refuses_before_asking(v, tmp_path, monkeypatch):
    home = tmp_path / "r"
    v.ok(home, "id", "new", "--name", "Rita Reporter")
    before = (home / IDENTITY_FILE).read_bytes()
    # No passphrase at all is available: the refusal must come before asking for one
    monkeypatch.delenv("VELADOR_PASSPHRASE", raising=False)
    from cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["--home", str(home), "id", "new", "--name", "Other"])
    assert exc.value.code == 65  # before: 77, "no passphrase available" (it asked first)
    assert (home / IDENTITY_FILE).read_bytes() == before


@pytest.mark.parametrize(("lang", "env_lang"), [("es", "en_US.UTF-8"), ("en", "es_MX.UTF-8")])
def test_lang_option_chooses_the_suggestions_words(v, tmp_path, lang, env_lang):
    """--lang beats the environment for the suggestion too (vault/passphrase.py set_language),
    not only for the sentence around it."""
    code, _, err = run(
        v,
        tmp_path / "r",
        "--lang",
        lang,
        "id",
        "new",
        "--name",
        "Rita",
        passphrase="1234",
        LANG=env_lang,
        LANGUAGE=env_lang.split(".")[0],
    )
    assert code == 75
    from vault.passphrase import _words

    hint = err.strip().splitlines()[-1]
    assert hint.startswith("velador: sugerencia:" if lang == "es" else "velador: hint:")
    words = hint.rsplit(": ", 1)[1].split()
    assert len(words) >= 5 and all(w in _words(lang) for w in words), words
