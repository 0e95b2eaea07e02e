"""Creating a case: release key, SLIP-39 split, signed policy, sealed envelopes (format.md §4-5).

The release secret exists only inside `create_case`: it is split, turned into the public age
recipient, and dropped. (CPython cannot promise to wipe memory; the secret lives for well under a
second in a short-lived process. docs/threat-model.md states this.)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cards import Card
from .clock import Clock
from .encoding import parse_json, require
from .envelope import check_envelope, make_envelopes
from .errors import N_, FormatError, NotFoundError, PolicyError, StoreError, VeladorError
from .fsutil import atomic_write
from .identity import Identity
from .policy import Holder, Policy, Switch, parse_policy, sign_policy
from .shares import ShareSpec, age_recipient_str, new_release_secret, split
from .state import LocalState, seal_to_self
from .stores import open_store

SHARE_FILE_KIND = "velador-share-file"
SHARE_SUFFIX = ".velador-share"
POLICY_FILE = "policy.json"


@dataclass(frozen=True)
class NewCase:
    policy: Policy
    envelopes: dict[str, list[dict[str, Any]]]  # holder id -> one envelope per recipient
    offline_files: list[Path]


def new_case_id() -> str:
    return secrets.token_hex(10)


def plan_holders(spec: ShareSpec, nodes: list[Card]) -> tuple[Holder, ...]:
    """Assign each share: nodes first (in the order given), the rest to offline holders."""
    holders = []
    i = 0
    for g, (_, n) in enumerate(spec.groups):
        for m in range(n):
            if i < len(nodes):
                holders.append(Holder(f"n{i + 1}", g, m, "node", nodes[i]))
            else:
                holders.append(Holder(f"h{i + 1}", g, m, "offline"))
            i += 1
    if len(nodes) > spec.total:
        raise PolicyError(
            N_("%(count)s nodes but only %(total)s shares"),
            hint=N_("raise --shares"),
            count=len(nodes),
            total=spec.total,
        )
    return tuple(holders)


def create_case(
    state: LocalState,
    identity: Identity,
    name: str,
    recipients: list[Card],
    spec: ShareSpec,
    stores: list[str],
    clock: Clock,
    *,
    nodes: list[Card] | None = None,
    switch: Switch | None = None,
    offline_dir: Path | None = None,
    replaces: str | None = None,
    case_id: str | None = None,
    s3_endpoint: str | None = None,
) -> NewCase:
    if identity.role != "reporter":
        raise PolicyError(
            N_("only a reporter identity can create cases (this one is %(role)r)"),
            role=identity.role,
        )
    from .manifest import MAX_LABEL_BYTES

    if not name.strip() or len(name.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
        # The name is each snapshot's label (format §6.4): refuse now, not at the first deposit.
        raise PolicyError(
            N_("a case name must have 1 to %(limit)s bytes"),
            hint=N_("choose a shorter name"),
            limit=MAX_LABEL_BYTES,
        )
    if not recipients:
        raise PolicyError(
            N_("a case needs at least one recipient"), hint=N_("add --recipient ALIAS")
        )
    if len({c.fingerprint for c in recipients}) != len(recipients):
        raise PolicyError(
            N_("the same recipient is listed twice"), hint=N_("give each --recipient once")
        )
    holders = plan_holders(spec, nodes or [])
    offline = [h for h in holders if h.kind == "offline"]
    if offline and offline_dir is None:
        raise PolicyError(
            N_("%(count)s share(s) have no escrow node and need --offline-dir"),
            hint=N_("give --offline-dir DIR (a USB stick) or one --node per share"),
            count=len(offline),
        )
    secret = new_release_secret()
    policy = sign_policy(
        Policy(
            case_id=case_id or new_case_id(),
            created=clock.now(),
            reporter=identity.card,
            recipients=tuple(recipients),
            release_recipient=age_recipient_str(secret),
            spec=spec,
            holders=holders,
            stores=tuple(stores),
            switch=switch,
            replaces=replaces,
        ),
        identity.sign_key,
    )
    groups = split(secret, spec)
    del secret  # only the shares leave this function
    envelopes: dict[str, list[dict[str, Any]]] = {}
    for h in holders:
        envelopes[h.id] = make_envelopes(policy, h, groups[h.group][h.member], identity.sign_key)
    del groups
    files = write_offline(policy, envelopes, offline_dir) if offline and offline_dir else []
    # The policy is NOT copied into the stores: it names the reporter, the recipients and the
    # editors, and a store provider must learn nothing about who works with whom (threat model
    # §2.5). Recipients get it from the nodes' release or beside the share files (format §5.3).
    # Each store is still asked once, so a wrong bucket or refused credentials show up now
    # rather than at the first deposit.
    for url in stores:
        next(iter(open_store(url, s3_endpoint=s3_endpoint).list(f"{policy.case_id}/")), None)
    return NewCase(policy, envelopes, files)


def register_locally(
    state: LocalState, identity: Identity, name: str, new: NewCase, extra: dict[str, Any]
) -> None:
    case_secrets = {
        "chunk_key": secrets.token_bytes(32).hex(),
        "chunker_seed": secrets.randbits(63),
    }
    state.add_case(name, new.policy, seal_to_self(case_secrets, identity.card.box_pk), extra)
    state.save_envelopes(new.policy, new.envelopes)


def write_offline(
    policy: Policy, envelopes: dict[str, list[dict[str, Any]]], out: Path
) -> list[Path]:
    """One file per offline holder; each carries the signed policy so it stands alone."""
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(out / POLICY_FILE, json.dumps(policy.doc, indent=1).encode(), mode=0o644)
    written = []
    for h in policy.holders:
        if h.kind != "offline":
            continue
        doc = {
            "kind": SHARE_FILE_KIND,
            "v": 1,
            "case_id": policy.case_id,
            "holder": h.id,
            "policy": policy.doc,
            "envelopes": envelopes[h.id],
        }
        path = out / f"{policy.case_id[:8]}-{h.id}{SHARE_SUFFIX}"
        if path.exists():
            raise PolicyError(
                N_("%(path)s already exists"), hint=N_("use an empty --offline-dir"), path=path
            )
        atomic_write(path, json.dumps(doc, indent=1).encode(), mode=0o600)
        written.append(path)
    return written


@dataclass
class ShareBundle:
    policy: Policy
    envelopes: list[tuple[str, dict[str, Any]]]  # (where it came from, envelope)
    rejected: list[str]


def read_share_dir(folder: Path, expected_reporter: bytes | None = None) -> ShareBundle:
    """Read every share file in `folder`; files that do not parse or verify are named, not fatal."""
    if not folder.is_dir():
        raise NotFoundError(N_("%(folder)s is not a folder"), folder=folder)
    by_policy: dict[str, tuple[Policy, list[tuple[str, dict[str, Any]]]]] = {}
    rejected: list[str] = []
    for path in sorted(folder.glob(f"*{SHARE_SUFFIX}")):
        try:
            doc = parse_json(path.read_bytes(), f"share file {path.name}", 4 * 1024 * 1024)
            if require(doc, "kind", str, "share file") != SHARE_FILE_KIND or doc.get("v") != 1:
                raise FormatError(N_("not a velador share file"))
            policy = parse_policy(doc.get("policy"), expected_reporter)
            envs = require(doc, "envelopes", list, "share file")
            # format.md §5.3: the file's own case_id and holder agree with what it carries.
            if require(doc, "case_id", str, "share file") != policy.case_id:
                raise FormatError(N_("the share file names another case than its policy"))
            holder = require(doc, "holder", str, "share file")
            if holder not in {h.id for h in policy.holders}:
                raise FormatError(N_("the share file names a holder its policy does not list"))
            for env in envs:
                check_envelope(env, policy)
                if env["body"]["holder"] != holder:
                    raise FormatError(N_("the share file holds an envelope of another holder"))
            entry = by_policy.setdefault(policy.hash, (policy, []))
            entry[1].extend((path.name, env) for env in envs)
        except Exception as exc:
            msg = getattr(exc, "message", None) or type(exc).__name__
            rejected.append(f"{path.name}: {msg}")
    if not by_policy:
        raise NotFoundError(
            N_("no valid share file in %(folder)s (%(rejected)s)")
            if rejected
            else N_("no valid share file in %(folder)s"),
            hint=N_("share files end in %(suffix)s"),
            folder=folder,
            rejected="; ".join(rejected[:3]),
            suffix=SHARE_SUFFIX,
        )
    # Several versions of a case (after a rotation) may sit side by side: use the most common;
    # among equals the newest (not replaced by another one present, then the latest `created`,
    # then the greatest hash), never whichever file name sorts first (format.md §5.3).
    replaced = {p.replaces for p, _ in by_policy.values()}
    policy, envs = max(
        by_policy.values(),
        key=lambda v: (len(v[1]), v[0].hash not in replaced, v[0].created, v[0].hash),
    )
    for other, oenvs in by_policy.values():
        if other.hash != policy.hash:
            rejected.extend(f"{n}: belongs to another version of the case" for n, _ in oenvs)
    return ShareBundle(policy, envs, rejected)


# --- rotation (docs/decisions.md (9)) ------------------------------------------------------------

KEYRING_KIND = "velador-keyring"


@dataclass(frozen=True)
class Rotation:
    old: Policy
    new: NewCase
    keyring_key: str


def make_keyring(old: Policy, old_envelopes: dict[str, list[dict[str, Any]]], new: Policy) -> bytes:
    """The keyring of `new`: the previous policy and its envelopes for the recipients who remain,
    age-encrypted to the NEW release recipient.

    It is not signed as a whole: every part of it is reporter-signed and checked on reading (the
    previous policy, whose hash `new.replaces` names, and each envelope against it), so a forged
    keyring can at worst omit envelopes, which deleting the object would do as well."""
    keep = {c.fingerprint for c in new.recipients}
    envs = [
        env
        for holder in sorted(old_envelopes)
        for env in old_envelopes[holder]
        if env["body"]["recipient"] in keep
    ]
    doc = {
        "kind": KEYRING_KIND,
        "v": 1,
        "case_id": new.case_id,
        "policy_hash": new.hash,
        "previous": old.hash,
        "previous_policy": old.doc,
        "envelopes": envs,
    }
    from .objects import encrypt

    return encrypt(json.dumps(doc, sort_keys=True).encode(), new.release_recipient)


def open_keyring(blob: bytes, new: Policy, new_secret: bytes, box_key: Any) -> tuple[Policy, bytes]:
    """Recipient side: the previous policy and its release secret, from the keyring of `new`
    opened with `new_secret` and the recipient's own X25519 key (`box_key`)."""
    from .envelope import open_envelope
    from .objects import decrypt
    from .shares import age_identity, combine_any

    plain = decrypt(blob, [age_identity(new_secret)], "keyring")
    doc = parse_json(plain, "keyring", 64 * 1024 * 1024)
    if require(doc, "kind", str, "keyring") != KEYRING_KIND or doc.get("v") != 1:
        raise FormatError(N_("not a velador keyring, or an unsupported version"))
    if doc.get("case_id") != new.case_id or doc.get("policy_hash") != new.hash:
        raise FormatError(N_("the keyring belongs to another case or policy"))
    old = parse_policy(doc.get("previous_policy"), new.reporter.sign_pk)
    if old.hash != new.replaces or doc.get("previous") != old.hash:
        raise FormatError(N_("the keyring's previous policy is not the one this policy replaces"))
    mnemonics = []
    for env in require(doc, "envelopes", list, "keyring"):
        try:
            mnemonics.append(open_envelope(env, old, box_key).mnemonic)
        except (FormatError, VeladorError):
            continue  # addressed to another recipient, or damaged: the others may suffice
    secret, _ = combine_any(mnemonics, old.release_recipient)
    return old, secret


def rotate_case(
    state: LocalState,
    identity: Identity,
    name: str,
    clock: Clock,
    *,
    offline_dir: Path | None = None,
    s3_endpoint: str | None = None,
) -> Rotation:
    """Steps 1-3, 6 and 7 of the rotation plan; the caller then registers at the nodes (4-5).

    The keyring is written to, and read back from, every store BEFORE anything changes locally:
    without it the deposits made so far could never be read again."""
    from .objects import keyring_key

    rec = state.case(name)
    old = rec.policy
    if rec.status in ("destroyed", "released"):
        raise PolicyError(
            N_("cannot rotate: case %(name)s was released")
            if rec.status == "released"
            else N_("cannot rotate: case %(name)s was destroyed"),
            name=name,
        )
    old_envs = state.envelopes_of(old, identity.box_key)
    if len(old_envs) != len(old.holders):
        raise PolicyError(
            N_("this laptop does not have every envelope of the current policy"),
            hint=N_("a rotation must carry them into the keyring; it cannot continue"),
        )
    nodes = [h.node for h in old.holders if h.node is not None]
    new = create_case(
        state,
        identity,
        name,
        list(old.recipients),
        old.spec,
        list(old.stores),
        clock,
        nodes=nodes,
        switch=old.switch,
        offline_dir=offline_dir,
        replaces=old.hash,
        case_id=old.case_id,
        s3_endpoint=s3_endpoint,
    )
    blob = make_keyring(old, old_envs, new.policy)
    key = keyring_key(old.case_id, new.policy.hash)
    for url in old.stores:
        store = open_store(url, s3_endpoint=s3_endpoint)
        store.put(key, blob)
        if store.size(key) != len(blob):
            raise StoreError(
                N_("the keyring did not reach %(url)s; nothing was changed"),
                hint=N_("check that the store can be reached, then run the command again"),
                url=url,
            )
    case_secrets = {
        # New chunk key and seed: no new snapshot may point at an object under the old key.
        "chunk_key": secrets.token_bytes(32).hex(),
        "chunker_seed": secrets.randbits(63),
    }
    state.replace_policy(name, new.policy, seal_to_self(case_secrets, identity.card.box_pk))
    state.save_envelopes(new.policy, new.envelopes)
    state.forget_envelopes(old)
    return Rotation(old, new, key)


def rotate_and_register(
    state: LocalState,
    identity: Identity,
    name: str,
    clock: Clock,
    timeout: float,
    *,
    offline_dir: Path | None = None,
    s3_endpoint: str | None = None,
) -> tuple[Rotation, Any]:
    """The whole rotation plan: `rotate_case`, then steps 4-5, the new policy registered at
    every node (vault.switch.arm), each recorded "pending" before any is asked, so a crash
    leaves the case "arming". Returns the rotation and the ArmReport (None for a case without
    nodes). `velador case rotate` and the browser's rotate page both call this."""
    from .switch import arm, mark_arming

    rot = rotate_case(
        state, identity, name, clock, offline_dir=offline_dir, s3_endpoint=s3_endpoint
    )
    if not rot.new.policy.nodes:
        return rot, None
    mark_arming(state, rot.new.policy, clock.now())
    return rot, arm(state, identity, state.case(name), clock, timeout)
