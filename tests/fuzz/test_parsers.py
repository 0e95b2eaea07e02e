"""Every parser of untrusted bytes, fuzzed: a value or a typed VeladorError, nothing else.

For each reader named in docs/format.md and docs/protocol.md this file runs
(a) arbitrary bytes or text, and (b) structure-aware mutations of a VALID document built with the
library (`tests/fuzz/world.py`), re-signed with the right key so that the signature passes and the
deeper checks are reached. A mutation that a reader accepts must still satisfy the documented
invariants (safe paths, threshold <= shares, ...). Sizes are bounded so one example takes
milliseconds; the deadline of the active profile (tests/fuzz/profiles.py) catches a hang.

The bugs this found are fixed; the tests that pinned them stay at the end as regressions.
"""

from __future__ import annotations

import copy
import tracemalloc
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from escrow_node.auth import verify_request
from tests.fuzz.mutations import flipped, hostile_values, json_values, mutated
from tests.fuzz.profiles import FUZZ, fuzz_settings
from tests.fuzz.world import (
    AGE_IDENTITY_STR,
    CHUNK_KEY,
    DATA,
    T0,
    card_text,
    resign,
    sealed_snapshot,
    valid_snapshot,
    world,
)
from vault.cards import MAX_NAME_CHARS, parse_card
from vault.constants import CHUNK_MAX, ROLES
from vault.durations import MAX_DURATION, parse_duration, parse_durations, parse_when
from vault.encoding import b64d, b64e, canonical_json, parse_json
from vault.envelope import check_envelope, open_envelope
from vault.errors import FormatError, PolicyError, UnsafePathError, VeladorError
from vault.manifest import (
    MAX_FILE_SIZE,
    open_snapshot,
    parse_manifest,
    safe_path,
    snapshot_id,
)
from vault.nodeproto.auth import NONCE_BYTES, SCHEME, body_hash, sign_request
from vault.nodeproto.messages import check_heartbeat
from vault.objects import check_object_id, decrypt, encrypt, object_id, open_chunk
from vault.policy import parse_policy
from vault.shares import check_mnemonic, combine_any
from vault.signing import sign_document
from vault.switch import CASE_CARD_PREFIX, parse_case_card

W = world()
CASE_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
ANY_TEXT = st.text(max_size=300)
ANY_BYTES = st.binary(max_size=600)


def refused_or(fn, *args, **kw):
    """Run a parser: its value, or None when it refused with a VeladorError (anything else
    propagates and fails the test)."""
    try:
        return fn(*args, **kw)
    except VeladorError:
        return None


# --- §1.1 encoding --------------------------------------------------------------------------


@FUZZ
@given(st.one_of(ANY_BYTES, ANY_TEXT, json_values.map(lambda v: canonical_json(v))))
def test_parse_json_any_input(data):
    value = refused_or(parse_json, data, "fuzz")
    if value is not None:
        canonical_json(value)  # never a float, NaN or Infinity


@FUZZ
@given(st.one_of(ANY_TEXT, hostile_values), st.none() | st.integers(0, 64))
def test_b64d_any_value(text, length):
    data = refused_or(b64d, text, "fuzz", length)
    if data is not None:
        assert b64e(data) == text  # one value, one spelling
        assert length is None or len(data) == length


# --- §2 contact cards ----------------------------------------------------------------------


def _card_invariants(card):
    assert card.role in ROLES
    assert 1 <= len(card.name) <= MAX_NAME_CHARS
    assert unicodedata.normalize("NFC", card.name) == card.name == card.name.strip()
    assert not any(unicodedata.category(c).startswith("C") for c in card.name)
    assert len(card.sign_pk) == 32 and len(card.box_pk) == 32
    assert card.url is None or card.url.startswith(("http://", "https://"))


@FUZZ
@given(
    st.one_of(
        ANY_TEXT,
        ANY_BYTES.map(lambda b: "velador:card:v1:" + b64e(b)),
        json_values.map(lambda v: card_text(v)),
    )
)
def test_parse_card_any_text(text):
    card = refused_or(parse_card, text)
    if card is not None:
        _card_invariants(card)


@FUZZ
@given(st.data(), st.sampled_from(["reporter", "outlet", "editor", "node"]))
def test_parse_card_resigned_mutations(data, who):
    p = {"reporter": W.reporter, "outlet": W.outlet, "editor": W.editor, "node": W.nodes[0]}[who]
    doc = parse_json(b64d(p.card.text[len("velador:card:v1:") :], "card"), "card")
    body = data.draw(mutated(doc["body"]))
    card = refused_or(parse_card, card_text(resign("card", body, p.sign, doc)))
    if card is not None:
        _card_invariants(card)
        assert card.sign_pk == bytes(p.sign.verify_key)  # self-signed by the key it announces


@FUZZ
@given(st.data())
def test_parse_card_flipped_text(data):
    text = data.draw(flipped(W.reporter.card.text.encode()))
    card = refused_or(parse_card, text.decode("latin-1"))
    assert card is None or card.text.strip() == W.reporter.card.text


# --- §4 policy -------------------------------------------------------------------------------


def _policy_invariants(p):
    spec = p.spec
    assert 1 <= len(spec.groups) <= 16
    assert 1 <= spec.group_threshold <= len(spec.groups)
    for k, n in spec.groups:
        assert 1 <= k <= n <= 16 and not (k == 1 and n > 1)
    assert len(p.holders) == spec.total
    assert len({h.id for h in p.holders}) == len(p.holders)
    assert {(h.group, h.member) for h in p.holders} == {
        (g, m) for g, (_, n) in enumerate(spec.groups) for m in range(n)
    }
    for h in p.holders:
        assert (h.kind == "node") == (h.node is not None)
        assert h.node is None or (h.node.role == "node" and h.node.url)
    assert 8 <= len(p.case_id) <= 64 and set(p.case_id) <= CASE_ID_CHARS
    assert 1 <= len(p.recipients) <= 32
    assert all(c.role in ("outlet", "editor") for c in p.recipients)
    assert len({c.fingerprint for c in p.recipients}) == len(p.recipients)
    assert p.release_recipient.startswith("age1") and len(p.release_recipient) <= 100
    assert p.stores and all(isinstance(s, str) and len(s) < 2048 for s in p.stores)
    if p.switch is not None:
        sw = p.switch
        assert any(h.kind == "node" for h in p.holders)
        assert 1 <= sw.every <= 366 * 86400 and 0 <= sw.grace <= 366 * 86400
        assert 0 <= sw.editor_quorum <= len(sw.editors) and len(sw.remind) <= 16
        assert all(e.role == "editor" for e in sw.editors)
        assert sw.duress in ("alert", "release")


@FUZZ
@given(st.one_of(ANY_BYTES, ANY_TEXT, json_values, json_values.map(lambda v: canonical_json(v))))
def test_parse_policy_any_input(data):
    p = refused_or(parse_policy, data)
    assert p is None  # nothing random is a signed policy


@fuzz_settings(60, 1.0)
@given(st.data(), st.booleans())
def test_parse_policy_resigned_mutations(data, pin):
    body = data.draw(mutated(W.policy_body()))
    doc = resign("policy", body, W.reporter.sign, W.policy.doc)
    pinned = bytes(W.reporter.sign.verify_key) if pin else None
    p = refused_or(parse_policy, doc, pinned)
    if p is not None:
        _policy_invariants(p)
        assert p.reporter.sign_pk == bytes(W.reporter.sign.verify_key)
        # The same document read from its bytes is the same policy.
        assert parse_policy(canonical_json(doc), pinned).hash == p.hash


# --- §5.2 envelopes --------------------------------------------------------------------------


@FUZZ
@given(st.one_of(ANY_BYTES, ANY_TEXT, json_values))
def test_check_envelope_any_input(data):
    assert refused_or(check_envelope, data, W.policy) is None


@FUZZ
@given(st.data(), st.sampled_from(["n1", "n2", "h3"]))
def test_envelope_outer_resigned_mutations(data, holder):
    env = W.envelope(holder)
    body = data.draw(mutated(env["body"]))
    doc = resign("envelope", body, W.reporter.sign, env)
    checked = refused_or(check_envelope, doc, W.policy)
    if checked is not None:
        assert checked["case_id"] == W.policy.case_id and checked["policy_hash"] == W.policy.hash
        assert checked["holder"] in {h.id for h in W.policy.holders}
        assert W.policy.recipient_by_fingerprint(checked["recipient"]) is not None
    opened = refused_or(open_envelope, doc, W.policy, W.outlet.box)
    if opened is not None:
        h = next(h for h in W.policy.holders if h.id == opened.holder)
        assert (opened.group, opened.member) == (h.group, h.member)


@fuzz_settings(40, 0.5)
@given(st.data(), st.sampled_from(["n1", "n2", "h3"]))
def test_envelope_inner_resigned_mutations(data, holder):
    from nacl.public import SealedBox

    inner_body = data.draw(mutated(W.inner_share_body(holder)))
    inner = resign("share", inner_body, W.reporter.sign, {"kind": "share", "sig": "", "signer": ""})
    try:
        plain = canonical_json(inner)
    except (ValueError, TypeError, RecursionError):
        return
    outer = copy.deepcopy(W.envelope(holder)["body"])
    outer["sealed"] = b64e(bytes(SealedBox(W.outlet.box.public_key).encrypt(plain)))
    doc = resign("envelope", outer, W.reporter.sign, W.envelope(holder))
    opened = refused_or(open_envelope, doc, W.policy, W.outlet.box)
    if opened is not None:
        h = next(h for h in W.policy.holders if h.id == opened.holder)
        assert (opened.holder, opened.group, opened.member) == (holder, h.group, h.member)
        share = check_mnemonic(opened.mnemonic)
        assert (share.group_index, share.index) == (h.group, h.member)


# --- §5.1 SLIP-39 mnemonics --------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        ANY_TEXT,
        st.lists(st.sampled_from([*W.mnemonics[0].split(), "zzz", "acid"]), max_size=40).map(
            " ".join
        ),
    )
)
def test_check_mnemonic_any_text(text):
    refused_or(check_mnemonic, text)


@FUZZ
@given(st.data())
def test_check_mnemonic_swapped_words(data):
    words = W.mnemonics[0].split()
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(0, len(words) - 1))
    words[i], words[j] = words[j], words[i]
    share = refused_or(check_mnemonic, " ".join(words))
    assert share is None or " ".join(words) == W.mnemonics[0] or i == j or words[i] == words[j]


@st.composite
def forged_mnemonic(draw):
    """A mnemonic with a valid checksum but any header fields: anyone can make these."""
    from shamir_mnemonic.share import Share

    gc = draw(st.integers(1, 16))
    share = Share(
        identifier=draw(st.integers(0, 2**15 - 1)),
        extendable=draw(st.booleans()),
        iteration_exponent=draw(st.integers(0, 2)),
        group_index=draw(st.integers(0, gc - 1)),
        group_threshold=draw(st.integers(1, gc)),
        group_count=gc,
        index=draw(st.integers(0, 15)),
        member_threshold=draw(st.integers(1, 4)),
        value=draw(st.binary(min_size=16, max_size=32).filter(lambda b: len(b) % 2 == 0)),
    )
    return share.mnemonic()


@fuzz_settings(40, 0.3)
@given(st.lists(st.one_of(st.sampled_from(W.mnemonics), forged_mnemonic(), ANY_TEXT), max_size=8))
def test_combine_any_hostile_lists(mnemonics):
    got = refused_or(combine_any, mnemonics, W.policy.release_recipient)
    if got is not None:
        from vault.shares import age_recipient_str

        secret, used = got
        assert age_recipient_str(secret) == W.policy.release_recipient
        assert set(used) <= set(mnemonics)


# --- §5.3 share folders --------------------------------------------------------------------


@fuzz_settings(25, 0.2)
@given(data=st.data())
def test_read_share_dir_hostile_files(tmp_path_factory, data):
    import json

    from vault.case import SHARE_FILE_KIND, read_share_dir

    folder = tmp_path_factory.mktemp("shares")
    good = {
        "kind": SHARE_FILE_KIND,
        "v": 1,
        "case_id": W.policy.case_id,
        "holder": "h3",
        "policy": W.policy.doc,
        "envelopes": W.envelopes["h3"],
    }
    for i in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["mutated", "bytes", "good"]))
        if kind == "bytes":
            raw = data.draw(ANY_BYTES)
        else:
            doc = data.draw(mutated(good)) if kind == "mutated" else good
            try:
                raw = json.dumps(doc, indent=1).encode()
            except (ValueError, TypeError, RecursionError):
                raw = b"\xff"
        (folder / f"f{i}.velador-share").write_bytes(raw)
    bundle = refused_or(read_share_dir, folder, bytes(W.reporter.sign.verify_key))
    if bundle is not None:
        _policy_invariants(bundle.policy)
        for _, env in bundle.envelopes:
            check_envelope(env, bundle.policy)


# --- §6.3 stored objects -----------------------------------------------------------------------

_VALID_OBJECT = encrypt(DATA, W.policy.release_recipient)
_OID = object_id(CHUNK_KEY, DATA)


@FUZZ
@given(st.one_of(ANY_BYTES, flipped(_VALID_OBJECT)))
def test_stored_object_hostile_bytes(blob):
    data = refused_or(open_chunk, blob, [W.age_id], CHUNK_KEY, _OID)
    assert data is None or data == DATA  # a store cannot substitute another object
    refused_or(decrypt, blob, [W.age_id], "fuzz")


@FUZZ
@given(st.one_of(ANY_TEXT, hostile_values))
def test_check_object_id_any_value(value):
    oid = refused_or(check_object_id, value)
    assert oid is None or (len(oid) == 64 and set(oid) <= set("0123456789abcdef"))


# --- §6.4 manifests ----------------------------------------------------------------------------


def _manifest_invariants(m):
    seen = set()
    kinds = {}
    for e in m.entries:
        assert safe_path(e.path) == e.path
        key = unicodedata.normalize("NFC", e.path).casefold()
        assert key not in seen
        seen.add(key)
        kinds[e.path] = e.type
        assert e.type in ("file", "dir") and 0 <= e.mode <= 0o777
        assert 0 <= e.size <= MAX_FILE_SIZE and sum(n for _, n in e.chunks) == e.size
        assert all(1 <= n <= CHUNK_MAX for _, n in e.chunks)
        assert e.path.split("/", 1)[0] in m.roots
    for p in kinds:
        parent = p.rpartition("/")[0]
        while parent:
            assert kinds.get(parent) != "file"
            parent = parent.rpartition("/")[0]
    assert all("/" not in r for r in m.roots) and len(set(m.roots)) == len(m.roots)
    assert m.seq >= 1 and (m.seq == 1) == (m.parent is None)
    assert len(m.chunk_key) == 32 and 0 <= m.chunker_seed < 2**63


@FUZZ
@given(st.one_of(ANY_TEXT, hostile_values))
def test_safe_path_any_value(path):
    p = refused_or(safe_path, path)
    if p is not None:
        assert not p.startswith("/") and "\x00" not in p and "\\" not in p
        assert all(part not in ("", ".", "..") for part in p.split("/"))


@fuzz_settings(60, 1.0)
@given(st.data())
def test_parse_manifest_mutations(data):
    body = data.draw(mutated(W.manifest_body()))
    try:
        m = parse_manifest(body)
    except VeladorError:
        return
    _manifest_invariants(m)


@fuzz_settings(30, 0.3)
@given(st.data())
def test_open_snapshot_resigned_mutations(data):
    body = data.draw(mutated(W.manifest_body()))
    doc = resign("snapshot", body, W.reporter.sign, {"kind": "snapshot", "sig": "", "signer": ""})
    ct = sealed_snapshot(doc)
    if ct is None:
        return
    m = refused_or(
        open_snapshot, ct, [W.age_id], W.reporter.card.sign_pk, snapshot_id(ct), W.policy.case_id
    )
    if m is not None:
        _manifest_invariants(m)
        assert m.case_id == W.policy.case_id


@FUZZ
@given(st.one_of(ANY_BYTES, flipped(valid_snapshot()[1])))
def test_open_snapshot_hostile_bytes(ct):
    sid, good = valid_snapshot()
    for expected in (snapshot_id(ct), sid):
        m = refused_or(
            open_snapshot, ct, [W.age_id], W.reporter.card.sign_pk, expected, W.policy.case_id
        )
        assert m is None or ct == good or _manifest_invariants(m) is None


@pytest.mark.parametrize("size", [2**50 + 1, 2**62, 2**63, 2**64, 10**30])
def test_huge_declared_size_does_not_allocate(size):
    # Given a manifest entry that declares an absurd size (with or without chunks to match)
    body = W.manifest_body()
    body["entries"][1]["size"] = size
    body["entries"][1]["chunks"] = [["ab" * 32, CHUNK_MAX]] * 4
    # When it is parsed, then it is refused and parsing allocates next to nothing
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"impossible size|do not add up"):
            parse_manifest(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_largest_legal_size_without_its_chunks_does_not_allocate():
    # 2^50 bytes is the largest size allowed, and only when 2^28 chunk references add up to it;
    # declared without them it is refused, and reading it costs nothing.
    body = W.manifest_body()
    body["entries"][1]["size"] = MAX_FILE_SIZE
    body["entries"][1]["chunks"] = [["ab" * 32, CHUNK_MAX]] * 4
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="do not add up"):
            parse_manifest(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


# --- protocol: heartbeats, signed requests, case cards ------------------------------------------


@FUZZ
@given(st.data())
def test_check_heartbeat_resigned_mutations(data):
    template = {"kind": "heartbeat", "sig": "", "signer": ""}
    if data.draw(st.booleans()):
        doc = data.draw(json_values)
    else:
        body = data.draw(mutated(W.heartbeat_body()))
        doc = resign("heartbeat", body, W.reporter.sign, template)
    hb = refused_or(check_heartbeat, doc, W.policy)
    if hb is not None:
        assert 0 < hb.seq < 2**62 and 0 <= hb.time < 2**40 and len(hb.markers) <= 64


def _request_body():
    return {
        "v": 1,
        "method": "POST",
        "path": f"/v1/cases/{W.policy.case_id}/heartbeat",
        "query": "",
        "body": body_hash(b"{}"),
        "time": T0,
        "nonce": b64e(bytes(NONCE_BYTES)),
        "node": b64e(W.nodes[0].card.sign_pk),
        "case_id": W.policy.case_id,
    }


@FUZZ
@given(st.data())
def test_verify_request_hostile_headers(data):
    path = f"/v1/cases/{W.policy.case_id}/heartbeat"
    choice = data.draw(st.sampled_from(["text", "b64", "mutated"]))
    if choice == "text":
        header = data.draw(ANY_TEXT)
    elif choice == "b64":
        header = f"{SCHEME} " + b64e(data.draw(ANY_BYTES))
    else:
        body = data.draw(mutated(_request_body()))
        doc = resign("request", body, W.reporter.sign, {"kind": "request", "sig": "", "signer": ""})
        try:
            header = f"{SCHEME} " + b64e(canonical_json(doc))
        except (ValueError, TypeError, RecursionError):
            return
    req = refused_or(verify_request, header, "POST", path, "", b"{}", W.nodes[0].card.sign_pk, T0)
    if req is not None:
        assert abs(req.time - T0) <= 300 and len(b64d(req.nonce, "nonce")) == NONCE_BYTES
        assert req.case_id is None or isinstance(req.case_id, str)


def test_verify_request_accepts_the_real_thing():
    path = f"/v1/cases/{W.policy.case_id}/heartbeat"
    hdr = sign_request(W.reporter.sign, W.nodes[0].card.sign_pk, "POST", path, b"{}", T0)
    assert verify_request(hdr, "POST", path, "", b"{}", W.nodes[0].card.sign_pk, T0).time == T0


@FUZZ
@given(
    st.one_of(
        ANY_TEXT,
        ANY_BYTES.map(lambda b: CASE_CARD_PREFIX + b64e(b)),
        mutated(W.case_card_body()).map(
            lambda v: CASE_CARD_PREFIX + b64e(canonical_json(v) if _encodable(v) else b"{}")
        ),
    )
)
def test_parse_case_card_hostile(text):
    cc = refused_or(parse_case_card, text)
    if cc is not None:
        assert 8 <= len(cc.case_id) <= 64 and len(cc.policy_hash) == 64
        assert cc.nodes and all(n.role == "node" and n.url for n in cc.nodes)
        assert all(isinstance(s, str) and len(s) < 2048 for s in cc.stores)


def _encodable(v) -> bool:
    try:
        canonical_json(v)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


# --- durations typed on the command line -------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        ANY_TEXT,
        st.from_regex(r"\A\s*(\d{1,9}[smhdwSMHDW]){0,4}\s*\Z"),
        st.from_regex(r"\A\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?([Zz]|[+-]\d{2}:\d{2})?\Z"),
    )
)
@example("9999-12-31T23:59:59-23:59")
@example("0001-01-01T00:00+14:00")
def test_durations_any_text(text):
    d = refused_or(parse_duration, text)
    assert d is None or 0 < d <= MAX_DURATION
    ds = refused_or(parse_durations, text)
    assert ds is None or all(0 < x <= MAX_DURATION for x in ds)
    when = refused_or(parse_when, text, T0)
    assert when is None or when > T0
    # durations only ever raise PolicyError, never another VeladorError
    for fn, args in ((parse_duration, (text,)), (parse_when, (text, T0))):
        try:
            fn(*args)
        except VeladorError as exc:
            assert isinstance(exc, PolicyError)


# --- regressions: bugs this fuzzing found, fixed ------------------------------------------------


def _deep_doc(kind: str, depth: int) -> bytes:
    body = "[" * depth + "]" * depth
    signer, sig = b64e(b"a" * 32), b64e(b"b" * 64)
    return f'{{"kind":"{kind}","body":{body},"signer":"{signer}","sig":"{sig}"}}'.encode()


def test_parse_card_deeply_nested_body_is_a_format_error():
    # The failing depth is a window just below what parse_json accepts; where it lies depends on
    # the depth of the caller's stack, so try every depth (about 50 ms).
    for depth in range(1, 1100):
        text = "velador:card:v1:" + b64e(_deep_doc("card", depth))
        assert len(text) <= 4096
        with pytest.raises(FormatError):
            parse_card(text)


@pytest.mark.parametrize("field", ["method", "path", "query", "body", "node"])
def test_verify_request_non_ascii_field_is_unauthenticated(field):
    from escrow_node.errors import Unauthenticated

    path = f"/v1/cases/{W.policy.case_id}/heartbeat"
    body = _request_body()
    body[field] = "\u202e"
    doc = sign_document("request", body, W.outlet.sign)
    header = f"{SCHEME} " + b64e(canonical_json(doc))
    with pytest.raises(Unauthenticated):
        verify_request(header, "POST", path, "", b"{}", W.nodes[0].card.sign_pk, T0)


def test_parse_manifest_lone_surrogate_in_instructions():
    body = parse_json(
        canonical_json(W.manifest_body()).replace(b'"Publicar con Diario Norte."', b'"\\ud800"'),
        "manifest",
    )
    assert body["instructions"] == "\ud800"
    with pytest.raises(FormatError):
        parse_manifest(body)


def test_unsafe_path_error_is_a_format_error():
    assert issubclass(UnsafePathError, FormatError)


def test_world_documents_are_valid():
    assert parse_policy(W.policy.doc).hash == W.policy.hash
    for envs in W.envelopes.values():
        check_envelope(envs[0], W.policy)
    sid, ct = valid_snapshot()
    m = open_snapshot(ct, [W.age_id], W.reporter.card.sign_pk, sid, W.policy.case_id)
    _manifest_invariants(m)
    assert decrypt(_VALID_OBJECT, [W.age_id], "x") == DATA
    assert AGE_IDENTITY_STR.startswith("AGE-SECRET-KEY-1")
    assert check_heartbeat(resign("heartbeat", W.heartbeat_body(), W.reporter.sign, {}), W.policy)
    assert parse_case_card(CASE_CARD_PREFIX + b64e(canonical_json(W.case_card_body())))
