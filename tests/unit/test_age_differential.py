"""vault/agev1.py against the references, both directions: pyrage and the stock `age` binary.

What the engine writes, pyrage and `age -d` open to the same bytes; what pyrage and `age -e`
write, the engine opens to the same bytes. Sizes around the 64 KiB STREAM chunk (0, 1, 64 KiB
± 1), several chunks, and random sizes and contents (hypothesis). pyrage stays the reference
(issue 14): the engine must never disagree with it on a file either of them wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyrage import x25519

from vault import agev1
from vault.errors import FormatError
from vault.state import _SCHEMA

SIZES = [0, 1, 65535, 65536, 65537, 2 * 65536, 3 * 65536 + 5, 1024 * 1024 + 17]
P_IDENT = x25519.Identity.generate()
RECIPIENT = str(P_IDENT.to_public())
E_IDENT = agev1.Identity.from_str(str(P_IDENT))
RANDOM = settings(
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIZE = st.one_of(st.integers(0, 4 * 65536 + 3), st.sampled_from(SIZES))


def _age() -> str:
    path = shutil.which("age")
    if path is None:
        pytest.fail("the stock `age` binary is missing: install the Debian package `age`")
    return path


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agekey") / "key.txt"
    path.write_text(f"{P_IDENT}\n")
    path.chmod(0o600)
    return path


def age_decrypt(ciphertext: bytes, keyfile: Path) -> bytes:
    return subprocess.run(
        [_age(), "-d", "-i", str(keyfile)], input=ciphertext, capture_output=True, check=True
    ).stdout


def age_encrypt(data: bytes) -> bytes:
    return subprocess.run(
        [_age(), "-e", "-r", RECIPIENT], input=data, capture_output=True, check=True
    ).stdout


def test_keys_match_pyrage() -> None:
    assert str(E_IDENT.to_public()) == RECIPIENT
    assert str(agev1.Recipient.from_str(RECIPIENT)) == RECIPIENT
    assert str(P_IDENT) not in repr(E_IDENT)  # the secret never shows in a repr


@pytest.mark.parametrize("size", SIZES)
def test_engine_to_pyrage_and_back(size: int) -> None:
    data = os.urandom(size)
    ct = bytes(agev1.encrypt(data, [RECIPIENT]))
    assert len(ct) == 168 + agev1.payload_size(size)  # one X25519 stanza, no grease (§6.3)
    assert pyrage.decrypt(ct, [P_IDENT]) == data
    assert agev1.decrypt(pyrage.encrypt(data, [P_IDENT.to_public()]), [E_IDENT]) == data


@pytest.mark.parametrize("size", SIZES)
def test_engine_to_age_and_back(size: int, keyfile: Path) -> None:
    data = os.urandom(size)
    assert age_decrypt(bytes(agev1.encrypt(data, [RECIPIENT])), keyfile) == data
    assert agev1.decrypt(age_encrypt(data), [E_IDENT]) == data


@RANDOM
@given(size=SIZE, seed=st.binary(min_size=8, max_size=8))
def test_random_sizes_both_directions(size: int, seed: bytes, keyfile: Path) -> None:
    data = (seed * (size // 8 + 1))[:size]
    ours = bytes(agev1.encrypt(data, [RECIPIENT]))
    assert pyrage.decrypt(ours, [P_IDENT]) == data
    assert age_decrypt(ours, keyfile) == data
    assert agev1.decrypt(pyrage.encrypt(data, [P_IDENT.to_public()]), [E_IDENT]) == data
    assert agev1.decrypt(age_encrypt(data), [E_IDENT]) == data


class _Pieces:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: memoryview) -> int:
        self.parts.append(bytes(data))  # the engine reuses its buffer: copy it
        return len(data)


@pytest.mark.parametrize("size", [0, 65536, 17 * 65536 + 1])
def test_streaming_encryption_is_plain_age(size: int) -> None:
    data = os.urandom(size)
    sink = _Pieces()
    written = agev1.encrypt_to(memoryview(data), [RECIPIENT], sink)
    ct = b"".join(sink.parts)
    assert written == len(ct)
    assert pyrage.decrypt(ct, [P_IDENT]) == data


def test_a_low_order_recipient_is_refused() -> None:
    zero = str(agev1.Recipient(bytes(32)))  # the all-zero point: every shared secret is zero
    with pytest.raises(FormatError):
        agev1.encrypt(b"x", [zero])


def test_several_recipients_and_identities() -> None:
    other = x25519.Identity.generate()
    data = os.urandom(70000)
    ct = bytes(agev1.encrypt(data, [RECIPIENT, str(other.to_public())]))
    assert pyrage.decrypt(ct, [other]) == data
    assert pyrage.decrypt(ct, [P_IDENT]) == data
    stranger = agev1.Identity.from_str(str(x25519.Identity.generate()))
    assert agev1.decrypt(ct, [stranger, agev1.Identity.from_str(str(other))]) == data
    with pytest.raises(agev1.NoMatchError):
        agev1.decrypt(ct, [stranger])


@RANDOM
@given(size=SIZE, where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_altered_byte_is_refused_by_both(size: int, where: float, bit: int) -> None:
    data = os.urandom(size)
    ct = bytearray(agev1.encrypt(data, [RECIPIENT]))
    ct[int(where * len(ct))] ^= 1 << bit
    with pytest.raises(agev1.AgeError):
        agev1.decrypt(bytes(ct), [E_IDENT])
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(bytes(ct), [P_IDENT])


@pytest.mark.parametrize("cut", [1, 16, 17, 65552])
def test_truncated_or_extended_is_refused_by_both(cut: int) -> None:
    ct = bytes(agev1.encrypt(os.urandom(3 * 65536), [RECIPIENT]))
    for bad in (ct[:-cut], ct + os.urandom(cut)):
        with pytest.raises(agev1.PayloadError):
            agev1.decrypt(bad, [E_IDENT])
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(bad, [P_IDENT])


def test_chunks_are_written_and_read_by_the_engine(tmp_path: Path) -> None:
    """The deposit and recovery workers of vault/objects.py go through the engine
    (docs/decisions.md (15)): a staged chunk carries exactly one X25519 stanza and no grease
    (pyrage adds grease to every file), pyrage opens it, the recovery worker opens it, and a
    worker process does not even import pyrage."""
    import sqlite3
    import subprocess
    import sys

    from vault import objects
    from vault.stores import FileStore

    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(_SCHEMA)  # the real index: tables and the `known` view
    case, key = "c" * 32, bytes(range(32))
    objects.init_deposit_worker(case, [(tmp_path / "s").as_uri()], None, key, RECIPIENT, str(db))
    data = os.urandom(65537)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    result = objects.store_chunk((0, str(src), src.stat().st_ino, 0, len(data)))
    objects.release_file()
    oid, tokens = result[2], result[8]
    store = FileStore(tmp_path / "s")
    store.commit([(objects.object_key(case, oid), tokens[0][1])])
    ct = store.get(objects.object_key(case, oid))
    assert len(ct) == 168 + agev1.payload_size(len(data))
    assert ct.count(b"\n-> ") == 1 and b"\n-> X25519 " in ct
    assert pyrage.decrypt(ct, [P_IDENT]) == data
    objects.init_recover_worker([], None, [str(P_IDENT)])
    assert objects.open_chunk_into(ct, objects._W["ids"], key, oid, len(data)) == data
    assert objects.open_chunk_into(ct, [P_IDENT], key, oid, len(data)) == data  # pyrage ids too
    code = "import sys, vault.objects, vault.stores; assert 'pyrage' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
