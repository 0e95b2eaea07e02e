"""Statements of docs/format.md that a reader without Velador relies on, checked against the code
and, where one exists, an independent implementation."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from vault import identity

ROOT = Path(__file__).resolve().parents[2]
FORMAT = (ROOT / "docs" / "format.md").read_text()


def test_argon2id_parameters_match_libsodium_and_openssl():
    # format.md §3, "Argon2id, exactly": mem in bytes, m = mem / 1024 KiB, p = 1, T = 32
    m = re.search(
        r'passphrase "([^"]+)" \(P = `([0-9a-f]+)`\), salt bytes\n`000102…0f`, `ops` (\d+), '
        r"`mem` (\d+) \(8 MiB\) give the key\n`([0-9a-f]{64})`",
        FORMAT,
    )
    assert m, "the Argon2id example of format.md §3 moved or changed shape"
    text, p_hex, ops, mem, key = (
        m.group(1),
        m.group(2),
        int(m.group(3)),
        int(m.group(4)),
        m.group(5),
    )
    password = unicodedata.normalize("NFC", text).encode()
    assert password.hex() == p_hex
    salt = bytes(range(16))
    assert identity._derive(unicodedata.normalize("NFC", text), salt, ops, mem).hex() == key
    openssl = Argon2id(salt=salt, length=32, iterations=ops, lanes=1, memory_cost=mem // 1024)
    assert openssl.derive(password).hex() == key


def test_a_slot_written_by_the_code_opens_with_the_documented_inputs(tmp_path):
    import base64
    import json

    import nacl.secret

    ident = identity.create_identity(tmp_path, "Ana", "reporter", "sen\u0303al", 1)  # NFD typed
    doc = json.loads((tmp_path / "identity.json").read_text())

    def b64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    opened = []
    for slot in doc["slots"]:
        kdf = Argon2id(
            salt=b64(slot["salt"]),
            length=32,
            iterations=slot["ops"],
            lanes=1,
            memory_cost=slot["mem"] // 1024,
        )
        key = kdf.derive(unicodedata.normalize("NFC", "señal").encode())
        try:
            opened.append(nacl.secret.SecretBox(key).decrypt(b64(slot["box"])))
        except Exception:
            continue
    assert len(opened) == 1 and opened[0][0] == 0
    assert opened[0][33:65] == bytes(ident.box_key)
