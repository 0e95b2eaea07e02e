"""`velador verify CASE --repair`: put back missing or damaged copies from a healthy replica.

The reporter cannot decrypt anything, but the local index records each stored object's size and
ciphertext hash (BLAKE3, docs/format.md §6.6), and so does each snapshot record. That is enough
to repair a store without any key:

1. A deep check (vault/verify.py) names every (store, key) whose copy is missing or damaged.
2. For each, another store of the case is read and its copy is accepted only if its size and
   hash are the recorded ones: a replica is checked *before* it is copied, so a damaged copy is
   never spread.
3. The good bytes are written to the store that needs them, read back and checked again.
4. A key with no good copy anywhere (or recorded without a hash, after an interrupted deposit)
   cannot be repaired from the stores. An object can be made again from the reporter's files by
   a deposit (`--from PATH`): its damaged copies are deleted first (ciphertext that fails its hash
   opens nothing), it is forgotten from the index, and the deposit re-encrypts and uploads it.
   A snapshot manifest cannot be made again: the report names it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from .errors import NotFoundError, StoreError, VeladorError
from .objects import cipher_hash, object_key, snapshot_key
from .state import CaseRecord, LocalState
from .stores import Store, open_store
from .verify import VerifyReport, forget_missing, known_damage, record_damage, verify_case


@dataclass
class RepairReport:
    found: VerifyReport  # the deep check before repairing
    repaired: list[str] = field(default_factory=list)  # "url: key (from url)"
    unrepaired: list[tuple[str, str]] = field(default_factory=list)  # (url, key) with no good copy

    @property
    def ok(self) -> bool:
        return not self.unrepaired and not self.found.unreachable

    def objects_needing_sources(self) -> list[str]:
        return sorted({k for _, k in self.unrepaired if "/objects/" in k})

    def snapshots_lost(self) -> list[str]:
        return sorted({k for _, k in self.unrepaired if "/snapshots/" in k})


def _expected(state: LocalState, case_id: str) -> dict[str, tuple[int, str | None]]:
    """key -> (recorded ciphertext size, recorded ciphertext hash or None)."""
    out = {object_key(case_id, o["oid"]): (o["csize"], o["chash"]) for o in state.objects(case_id)}
    for s in state.snapshots(case_id):
        out[snapshot_key(case_id, s["snap_id"])] = (s["csize"], s["chash"])
    return out


def _good_copy(store: Store, key: str, csize: int, chash: str) -> bytes | None:
    """The copy in `store` if its size and ciphertext hash are the recorded ones, else None."""
    try:
        data = store.get(key)
    except (NotFoundError, StoreError):
        return None
    if (csize and len(data) != csize) or cipher_hash(data) != chash:
        return None
    return data


def repair_case(
    state: LocalState, case: CaseRecord, s3_endpoint: str | None = None
) -> RepairReport:
    """Deep-check every store of the case, then copy good replicas over missing or bad copies."""
    policy = case.policy
    expected = _expected(state, policy.case_id)  # before verify forgets missing objects
    found = verify_case(state, case, deep=True, s3_endpoint=s3_endpoint)
    report = RepairReport(found)
    stores: dict[str, Store] = {}
    for url in policy.stores:
        try:
            stores[url] = open_store(url, s3_endpoint=s3_endpoint)
        except VeladorError:
            continue
    bad = set(found.bad)
    for url, key in sorted(bad):
        csize, chash = expected.get(key, (0, None))
        target = stores.get(url)
        data = None
        source = None
        if chash and target is not None:
            for other_url, other in stores.items():
                if other_url == url or (other_url, key) in bad:
                    continue
                data = _good_copy(other, key, csize, chash)
                if data is not None:
                    source = other_url
                    break
        if data is None or target is None:
            report.unrepaired.append((url, key))
            continue
        try:
            target.put(key, data)
            back = _good_copy(target, key, csize, str(chash))
        except StoreError:
            back = None
        if back is None:
            report.unrepaired.append((url, key))
            continue
        report.repaired.append(f"{url}: {key} (from {source})")
        _reindex(state, policy.case_id, key, csize, str(chash))
    record_damage(state, case, set(stores), report.unrepaired)
    return report


def _reindex(state: LocalState, case_id: str, key: str, csize: int, chash: str) -> None:
    """verify_case forgot a missing object from the index; a repaired one is known again."""
    prefix = f"{case_id}/objects/"
    if not key.startswith(prefix):
        return
    oid = key.rsplit("/", 1)[-1]
    with state.tx():
        state.db.execute(
            "INSERT OR REPLACE INTO objects (case_id, oid, csize, chash) VALUES (?,?,?,?)",
            [case_id, oid, csize, chash],
        )


def prepare_redeposit(
    state: LocalState, case: CaseRecord, report: RepairReport, s3_endpoint: str | None = None
) -> int:
    """Make the objects no replica could repair look new to the next deposit: delete their bad
    copies, forget them from the index, and empty the file cache so every file is read again.
    Returns how many objects were prepared."""
    keys = report.objects_needing_sources()
    if not keys:
        return 0
    for url in case.policy.stores:
        try:
            store = open_store(url, s3_endpoint=s3_endpoint)
        except VeladorError:
            continue
        for key in keys:
            with contextlib.suppress(NotFoundError, StoreError):
                store.delete(key)
    forget_missing(state, case.case_id, [f"store: {k}" for k in keys])
    with state.tx():
        state.db.execute("DELETE FROM filecache WHERE case_id = ?", [case.case_id])
    return len(keys)


__all__ = ["RepairReport", "known_damage", "prepare_redeposit", "repair_case"]
