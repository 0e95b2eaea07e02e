"""Snapshot manifests: hostile paths and shapes are refused before anything is written."""

from __future__ import annotations

import copy
import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault.case import plan_holders
from vault.constants import CHUNK_MAX
from vault.encoding import canonical_json, parse_json
from vault.errors import FormatError, NotFoundError, UnsafePathError, VeladorError
from vault.identity import create_identity
from vault.manifest import Entry, Manifest, parse_manifest, seal_snapshot, snapshot_id
from vault.objects import encrypt, object_id, object_key, snapshot_key
from vault.policy import Policy, sign_policy
from vault.recover import restore
from vault.shares import ShareSpec, age_identity_str, age_recipient_str, new_release_secret
from vault.signing import sign_document
from vault.stores import open_store

OID = "ab" * 32
CASE_ID = "case0001"
CHUNK_KEY = bytes(range(32))


def base_body(entries: list[dict], **over) -> dict:
    m = Manifest(
        case_id=CASE_ID,
        policy_hash="p" * 64,
        seq=1,
        created=1_700_000_000,
        parent=None,
        label="test",
        chunk_key=CHUNK_KEY,
        chunker_seed=42,
        entries=(),
        roots=("inv",),
    )
    body = m.body()
    body["entries"] = entries
    body.update(over)
    return body


def f(path: str, size: int = 3, chunks=None, **over) -> dict:
    e = {
        "path": path,
        "type": "file",
        "mode": 0o644,
        "mtime": 1,
        "size": size,
        "chunks": [[OID, size]] if chunks is None else chunks,
    }
    e.update(over)
    return e


def d(path: str) -> dict:
    return {"path": path, "type": "dir", "mode": 0o755, "mtime": 1}


def test_valid_manifest_parses():
    m = parse_manifest(base_body([d("inv"), f("inv/a.txt"), f("inv/empty", size=0, chunks=[])]))
    assert [e.path for e in m.entries] == ["inv", "inv/a.txt", "inv/empty"]
    assert m.entries[1].chunks == ((OID, 3),)


@pytest.mark.parametrize(
    ("path", "msg"),
    [
        ("../evil", "is not a plain relative path"),
        ("inv/../../evil", "is not a plain relative path"),
        ("inv/./a", "is not a plain relative path"),
        ("inv//a", "is not a plain relative path"),
        ("/etc/passwd", "is absolute"),
        ("inv/a\x00b", "contains a forbidden character"),
        ("inv\\..\\evil", "contains a forbidden character"),
        ("inv/a\nb", "contains control characters"),
        ("", "empty or non-text path"),
        ("a" * 256, "component that is too long"),
        ("n\u0303ino", "is not NFC-normalized"),
    ],
)
def test_unsafe_paths_are_refused(path, msg):
    with pytest.raises(UnsafePathError, match=msg):
        parse_manifest(base_body([f(path)]))


@pytest.mark.parametrize(
    ("entries", "msg"),
    [
        ([f("inv/a"), f("inv/a")], "lists the path 'inv/a' twice"),
        ([f("inv/Report.txt"), f("inv/REPORT.TXT")], "twice"),
        ([f("inv/a"), f("inv/a/b")], "lies under a file"),
        ([f("inv/a"), d("inv/a/sub"), f("inv/a/sub/c")], "lies under a file"),
        ([{"path": "inv/l", "type": "symlink", "mode": 0o777, "mtime": 1}], "unsupported type"),
        ([{"path": "inv/dev", "type": "device", "mode": 0o600, "mtime": 1}], "unsupported type"),
    ],
)
def test_unsafe_trees_are_refused(entries, msg):
    with pytest.raises(UnsafePathError, match=msg):
        parse_manifest(base_body(entries))


@pytest.mark.parametrize(
    ("entries", "msg"),
    [
        ([f("inv/a", size=10, chunks=[[OID, 3]])], "chunk lengths do not add up to its size"),
        ([f("inv/a", size=0, chunks=[[OID, 0]])], "impossible length"),
        ([f("inv/a", size=CHUNK_MAX + 1)], "impossible length"),
        ([f("inv/a", size=-1, chunks=[])], "impossible size"),
        ([f("inv/a", chunks=[["zz", 3]])], "invalid object id"),
        ([f("inv/a", chunks=[[OID, True]])], "chunk reference is malformed"),
        ([f("inv/a", mode=0o4755)], "invalid mode"),
        ([{"path": "inv", "type": "dir", "mode": 0o755, "mtime": 1, "size": 3}], "unexpected"),
        ([f("inv/a", target="/etc")], "manifest file entry 'inv/a' has unexpected fields"),
    ],
)
def test_bad_entries_are_format_errors(entries, msg):
    with pytest.raises(FormatError, match=msg):
        parse_manifest(base_body(entries))


@pytest.mark.parametrize(
    ("over", "msg"),
    [
        ({"v": 4}, "unsupported manifest version"),
        ({"chunker": {"alg": "rabin", "seed": 1, "hash": "blake3-keyed"}}, "unknown chunker"),
        ({"seq": 2}, "sequence and parent disagree"),
        ({"parent": "a" * 64}, "sequence and parent disagree"),
        ({"parent": "short", "seq": 2}, "parent id is invalid"),
        ({"parent": "x" * 64, "seq": 2}, r"parent id is invalid \(not 64 lowercase hex"),
        ({"parent": "AB" * 32, "seq": 2}, r"parent id is invalid \(not 64 lowercase hex"),
        ({"roots": ["inv/sub"]}, "manifest root 'inv/sub' is not a single top-level name"),
        ({"roots": ["inv", "inv"]}, "manifest lists a root twice"),
        ({"roots": ["other"]}, "manifest entry 'inv/a' lies under none of its roots"),
        ({"label": "é" * 513}, "manifest label is longer than 1024 bytes"),
        ({"extra": 1}, "manifest has an unknown field 'extra'"),
        (
            {"chunker": {"alg": "fastcdc2020", "seed": 1, "hash": "blake3-keyed", "x": 0}},
            "manifest chunker has unexpected fields",
        ),
        (
            {"chunker": {"alg": "fastcdc2020", "seed": 2**63, "hash": "blake3-keyed"}},
            r"manifest chunker seed is out of range \(0 to 2\^63 - 1\)",
        ),
        (
            {"chunker": {"alg": "fastcdc2020", "seed": -1, "hash": "blake3-keyed"}},
            "manifest chunker seed is out of range",
        ),
        ({"roots": ["../up"]}, "is not a plain relative path"),
        ({"instructions": 5}, "instructions are invalid"),
    ],
)
def test_bad_manifest_headers(over, msg):
    with pytest.raises(FormatError, match=msg):
        parse_manifest(base_body([f("inv/a")], **over))


# --- property tests ------------------------------------------------------------------------

name_st = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "._- ñüé"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
oid_st = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@st.composite
def manifests(draw):
    names = draw(st.lists(name_st, min_size=1, max_size=15, unique_by=str.casefold))
    entries = [Entry("root", "dir", 0o755, 0)]
    for n in names:
        chunks = tuple(draw(st.lists(st.tuples(oid_st, st.integers(1, CHUNK_MAX)), max_size=3)))
        entries.append(
            Entry(
                f"root/{n}",
                "file",
                draw(st.integers(0, 0o777)),
                draw(st.integers(0, 2**40)),
                sum(c[1] for c in chunks),
                chunks,
            )
        )
    seq = draw(st.integers(1, 1000))
    return Manifest(
        case_id=draw(st.text(min_size=1, max_size=20)),
        policy_hash="a" * 64,
        seq=seq,
        created=draw(st.integers(0, 2**40)),
        parent=None if seq == 1 else "b" * 64,
        label=draw(st.text(max_size=20)),
        chunk_key=draw(st.binary(min_size=32, max_size=32)),
        chunker_seed=draw(st.integers(0, 2**63 - 1)),
        entries=tuple(entries),
        instructions=draw(st.none() | st.text(max_size=100)),
        roots=("root",),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_manifest_round_trip(m):
    # Also through the real JSON reader, which refuses duplicate members (format.md §1.1).
    assert parse_json(canonical_json(m.body()), "manifest") == json.loads(canonical_json(m.body()))
    body = json.loads(canonical_json(m.body()))
    assert parse_manifest(body) == m
    assert canonical_json(parse_manifest(body).body()) == canonical_json(m.body())


json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_st)
def test_garbage_raises_only_velador_errors(garbage):
    with pytest.raises(VeladorError):
        parse_manifest(garbage)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_manifest_raises_only_velador_errors(data):
    body = base_body([d("inv"), f("inv/a.txt"), f("inv/b", size=0, chunks=[])])
    mutated = copy.deepcopy(body)
    target = mutated
    keys = data.draw(st.lists(st.sampled_from(["entries", 0, 1, 2, "path", "chunks", "chunker"])))
    for k in keys:
        if (
            isinstance(target, dict)
            and isinstance(k, str)
            and isinstance(target.get(k), (dict, list))
        ) or (
            isinstance(target, list)
            and isinstance(k, int)
            and k < len(target)
            and isinstance(target[k], (dict, list))
        ):
            target = target[k]
    if isinstance(target, dict) and target:
        key = data.draw(st.sampled_from(sorted(target)))
        target[key] = data.draw(json_st)
    elif isinstance(target, list) and target:
        target[data.draw(st.integers(0, len(target) - 1))] = data.draw(json_st)
    try:
        parse_manifest(mutated)
    except VeladorError:
        return  # the only acceptable failure; anything else propagates and fails the test


# --- restore against hostile, validly signed snapshots -------------------------------------


@pytest.fixture
def case(tmp_path):
    reporter = create_identity(tmp_path / "r", "Rita", "reporter", "pw", created=1)
    outlet = create_identity(tmp_path / "o", "Outlet", "outlet", "pw", created=1)
    secret = new_release_secret()
    spec = ShareSpec(1, ((2, 2),))
    store_dir = tmp_path / "store"
    url = f"file://{store_dir}"
    policy = sign_policy(
        Policy(
            case_id=CASE_ID,
            created=1,
            reporter=reporter.card,
            recipients=(outlet.card,),
            release_recipient=age_recipient_str(secret),
            spec=spec,
            holders=plan_holders(spec, []),
            stores=(url,),
        ),
        reporter.sign_key,
    )
    store = open_store(url)
    data = b"top secret\n"
    oid = object_id(CHUNK_KEY, data)
    store.put(object_key(CASE_ID, oid), encrypt(data, policy.release_recipient))

    def put_body(body: dict) -> str:
        body = dict(body, case_id=CASE_ID, policy_hash=policy.hash)
        plain = canonical_json(sign_document("snapshot", body, reporter.sign_key))
        ct = encrypt(plain, policy.release_recipient)
        sid = snapshot_id(ct)
        store.put(snapshot_key(CASE_ID, sid), ct)
        return sid

    def file_entry(path: str) -> dict:
        return f(path, size=len(data), chunks=[[oid, len(data)]])

    ns = type("Case", (), {})()
    ns.policy, ns.keys, ns.url, ns.put_body, ns.file_entry = (
        policy,
        [age_identity_str(secret)],
        url,
        put_body,
        file_entry,
    )
    ns.reporter = reporter
    return ns


def _snapshot_tree(root) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def test_a_sane_signed_snapshot_restores(case, tmp_path):
    case.put_body(base_body([d("inv"), case.file_entry("inv/a.txt")]))
    report = restore(case.policy, case.keys, [case.url], tmp_path / "out")
    assert (tmp_path / "out" / "inv" / "a.txt").read_bytes() == b"top secret\n"
    assert report.files == 1


@pytest.mark.parametrize(
    ("bad_path", "reason"),
    [
        ("../escaped.txt", "is not a plain relative path"),
        ("inv/../../escaped.txt", "is not a plain relative path"),
        ("/tmp/escaped-velador.txt", "is absolute"),
    ],
)
def test_hostile_signed_snapshot_writes_nothing(case, tmp_path, bad_path, reason):
    # Given a snapshot validly signed by the reporter's key but naming an escaping path
    sid = case.put_body(
        base_body([d("inv"), case.file_entry("inv/ok.txt"), case.file_entry(bad_path)])
    )
    out = tmp_path / "sub" / "out"
    before = _snapshot_tree(tmp_path)
    # When an outlet restores it, then recovery refuses with the real reason (not "no readable
    # snapshot") and nothing at all is written
    with pytest.raises(UnsafePathError) as exc:
        restore(case.policy, case.keys, [case.url], out)
    assert str(exc.value) == (
        f"snapshot 1 ({sid[:12]}) names an unsafe path: manifest path {bad_path!r} {reason}; "
        "refusing"
    )
    assert "possibly compromised" in (exc.value.hint or "")
    assert _snapshot_tree(tmp_path) == before
    assert not os.path.exists("/tmp/escaped-velador.txt")


def test_hostile_symlink_type_snapshot_writes_nothing(case, tmp_path):
    entry = {"path": "inv/link", "type": "symlink", "mode": 0o777, "mtime": 1, "target": "/etc"}
    case.put_body(base_body([d("inv"), case.file_entry("inv/ok.txt"), entry]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VeladorError):
        restore(case.policy, case.keys, [case.url], out)
    assert list(out.iterdir()) == []


def test_merged_tree_file_then_folder_is_refused(case, tmp_path):
    # Snapshot 1 has file inv2/x; snapshot 2 (roots: inv) adds inv/x while inv2 survives.
    # Then snapshot 3 makes "inv2/x/y" under a previous file without redepositing inv2's root.
    s1 = case.put_body(base_body([d("inv2"), case.file_entry("inv2/x")], roots=["inv2"]))
    case.put_body(
        base_body(
            [case.file_entry("inv2/x/y")],
            roots=["other"],
            seq=2,
            parent=s1,
        )
    )
    out = tmp_path / "out"
    # Snapshot 2 puts an entry outside its own roots, which the reader refuses by name; that
    # rule is what keeps a merged tree from ever putting a path under an older file.
    with pytest.raises(
        FormatError, match=r"snapshot 2 \(\w{12}\) is malformed: .*'inv2/x/y' lies under none of"
    ):
        restore(case.policy, case.keys, [case.url], out)
    assert not out.exists() or list(out.iterdir()) == []


def test_merged_tree_under_a_file_is_still_refused():
    from vault.recover import merged_entries

    # Defence in depth, for manifests that pass one by one: a later root adds a path below a
    # file that an earlier snapshot left under another root.
    m1 = parse_manifest(base_body([f("a")], roots=["a"]))
    m2 = parse_manifest(base_body([f("b")], roots=["b"]))
    object.__setattr__(m2, "entries", (Entry("a/x", "file", 0o644, 1, 0, ()),))
    with pytest.raises(UnsafePathError, match="merged tree puts 'a/x' under a file"):
        merged_entries([m1, m2])


@pytest.mark.parametrize(
    ("with_dir_entry", "msg"),
    [
        (True, "refusing to write 'inv': it would land outside the output folder"),
        (False, "it is not a plain folder"),
    ],
)
def test_preexisting_symlink_in_output_is_refused(case, tmp_path, with_dir_entry, msg):
    entries = [d("inv")] if with_dir_entry else []
    case.put_body(base_body([*entries, case.file_entry("inv/a.txt")]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    (out / "inv").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match=msg):
        restore(case.policy, case.keys, [case.url], out)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert (elsewhere / "keep.txt").read_text() == "untouched"
    assert (out / "inv").is_symlink()


def test_preexisting_symlink_as_target_file_is_not_followed(case, tmp_path):
    case.put_body(base_body([d("inv"), case.file_entry("inv/a.txt")]))
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    out = tmp_path / "out"
    (out / "inv").mkdir(parents=True)
    (out / "inv" / "a.txt").symlink_to(victim)
    with pytest.raises(VeladorError):
        restore(case.policy, case.keys, [case.url], out, force=True)
    assert victim.read_text() == "original"


def test_snapshot_signed_by_another_key_is_rejected(case, tmp_path):
    from nacl.signing import SigningKey

    body = dict(base_body([d("inv"), case.file_entry("inv/a.txt")]), policy_hash=case.policy.hash)
    plain = canonical_json(sign_document("snapshot", body, SigningKey.generate()))
    ct = encrypt(plain, case.policy.release_recipient)
    open_store(case.url).put(snapshot_key(CASE_ID, snapshot_id(ct)), ct)
    with pytest.raises(NotFoundError, match="no readable snapshot"):
        restore(case.policy, case.keys, [case.url], tmp_path / "out")


def test_seal_snapshot_round_trip(case):
    from pyrage import x25519

    from vault.manifest import open_snapshot
    from vault.shares import age_identity  # noqa: F401

    m = parse_manifest(base_body([d("inv"), case.file_entry("inv/a.txt")]))
    sid, ct = seal_snapshot(m, case.reporter.sign_key, case.policy.release_recipient)
    ids = [x25519.Identity.from_str(k) for k in case.keys]
    assert open_snapshot(ct, ids, case.reporter.card.sign_pk, sid, CASE_ID) == m
    with pytest.raises(FormatError, match="does not match its id"):
        open_snapshot(ct, ids, case.reporter.card.sign_pk, "0" * 64, CASE_ID)
    with pytest.raises(FormatError, match="belongs to another case"):
        open_snapshot(ct, ids, case.reporter.card.sign_pk, sid, "case2")
