"""`velador verify`: does every store hold every object the reporter's snapshots need?

The reporter cannot decrypt anything (the case key is in escrow), so the check works on what the
local index records: object ids, stored sizes and ciphertext hashes. `deep` downloads every object
and compares its BLAKE3 with the recorded hash (or, for objects recorded without one after an
interrupted deposit, with the first replica's).

Damaged copies found are remembered in the case's `extra` under "damaged" (docs/format.md §8:
`{store url: [keys]}`), so that `velador audit`, which only checks sizes, still counts a copy
`verify --deep` found damaged until `verify --repair` (vault/repair.py) or a clean deep check
clears it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import NotFoundError, StoreError
from .objects import cipher_hash, object_key, snapshot_key
from .state import CaseRecord, LocalState
from .stores import open_store


@dataclass
class VerifyReport:
    objects: int = 0
    snapshots: int = 0
    stores: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (store url, key) missing or damaged

    @property
    def ok(self) -> bool:
        return not (self.missing or self.damaged or self.unreachable)


def verify_case(
    state: LocalState,
    case: CaseRecord,
    deep: bool = False,
    s3_endpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    policy = case.policy
    items = [
        (object_key(policy.case_id, o["oid"]), o["csize"], o["chash"])
        for o in state.objects(policy.case_id)
    ]
    items += [
        (snapshot_key(policy.case_id, s["snap_id"]), s["csize"], s["chash"])
        for s in state.snapshots(policy.case_id)
    ]
    report = VerifyReport(
        objects=len(items),
        snapshots=len(state.snapshots(policy.case_id)),
        stores=list(policy.stores),
    )
    total = len(items) * len(policy.stores)
    done = 0
    first_hash: dict[str, str] = {}
    reached = set(policy.stores)
    for url in policy.stores:
        store = open_store(url, s3_endpoint=s3_endpoint)
        for key, csize, chash in items:
            done += 1
            if progress:
                progress(done, total)
            try:
                if deep:
                    data = store.get(key)
                    got = cipher_hash(data)
                    want = chash or first_hash.setdefault(key, got)
                    if got != want or (csize and len(data) != csize):
                        report.damaged.append(f"{store.url}: {key}")
                        report.bad.append((url, key))
                else:
                    size = store.size(key)
                    if size is None:
                        report.missing.append(f"{store.url}: {key}")
                        report.bad.append((url, key))
                    elif csize and size != csize:
                        report.damaged.append(f"{store.url}: {key} (size {size}, expected {csize})")
                        report.bad.append((url, key))
            except NotFoundError:
                report.missing.append(f"{store.url}: {key}")
                report.bad.append((url, key))
            except StoreError as exc:
                report.unreachable.append(f"{store.url}: {exc.message}")
                reached.discard(url)
                break
    if deep:
        record_damage(state, case, reached, report.bad)
    forget_missing(state, policy.case_id, report.missing)
    return report


def known_damage(case: CaseRecord) -> dict[str, list[str]]:
    """{store url: [keys]} that the last deep check found damaged or missing."""
    doc = case.extra.get("damaged")
    if not isinstance(doc, dict):
        return {}
    return {
        u: [k for k in ks if isinstance(k, str)] for u, ks in doc.items() if isinstance(ks, list)
    }


def record_damage(
    state: LocalState, case: CaseRecord, checked: set[str], bad: list[tuple[str, str]]
) -> None:
    """Replace what is known of the stores just checked in full; keep what is known of others."""
    doc = {u: ks for u, ks in known_damage(state.case(case.case_id)).items() if u not in checked}
    for url, key in bad:
        doc.setdefault(url, []).append(key)
    state.set_case_extra(case.case_id, "damaged", {u: sorted(set(ks)) for u, ks in doc.items()})


def forget_missing(state: LocalState, case_id: str, missing: list[str]) -> None:
    """Drop missing objects from the index so the next deposit re-checks and re-replicates them.

    The next deposit finds them absent from the index, asks each store, and copies the ciphertext
    from a store that still has it (or re-encrypts from the reporter's files).
    """
    prefix = f"{case_id}/objects/"
    oids = {line.rsplit("/", 1)[-1] for line in missing if prefix in line}
    if oids:
        from .deposit import remember_forms

        remember_forms(state, case_id, oids)  # a copy made again keeps its form (format §6.3)
        with state.tx():
            for oid in oids:
                state.db.execute(
                    "DELETE FROM objects WHERE case_id = ? AND oid = ?", [case_id, oid]
                )
