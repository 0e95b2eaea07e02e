"""Older release keys of a rotated case, for the recipient (docs/decisions.md §9, format §6.3).

After `velador case rotate`, deposits made before the rotation stay encrypted to the previous
release key. The reporter cannot re-encrypt them (the old secret was erased when it was split),
so the rotation stores a keyring beside the data: the previous policy and its envelopes,
age-encrypted to the new release key. A recipient who recovered the newest key walks that chain
back, one policy at a time, opening at each step the old envelopes addressed to them.

A keyring that is missing or unreadable in every store does not stop recovery: the newer
deposits are still recovered, and the report says which deposits cannot be read and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .case import open_keyring
from .errors import NotFoundError, VeladorError
from .objects import keyring_key
from .policy import Policy
from .shares import age_identity_str
from .stores import open_store
from .stores.base import Store

MAX_ROTATIONS = 256  # a chain longer than this is hostile or broken; stop rather than loop


def older_keys(
    policy: Policy,
    secret: bytes,
    stores: Iterable[Store],
    box_key: Any,
    problems: list[str],
) -> list[tuple[Policy, bytes]]:
    """Every earlier (policy, release secret) of the case, newest first.

    `problems` receives one line per keyring that could not be used, for the recovery report.
    """
    stores = list(stores)
    found: list[tuple[Policy, bytes]] = []
    seen = {policy.hash}
    cur, cur_secret = policy, secret
    while cur.replaces and len(found) < MAX_ROTATIONS:
        key = keyring_key(cur.case_id, cur.hash)
        opened: tuple[Policy, bytes] | None = None
        errors = []
        for store in stores:
            try:
                opened = open_keyring(store.get(key), cur, cur_secret, box_key)
                break
            except NotFoundError:
                errors.append(f"{store.url}: missing")
            except VeladorError as exc:
                errors.append(f"{store.url}: {exc.message}")
        if opened is None:
            problems.append(
                f"deposits made before policy {cur.hash[:12]} cannot be read: its keyring "
                f"({key}) is not usable in any store ({'; '.join(errors) or 'no store'})"
            )
            break
        old, old_secret = opened
        if old.hash in seen:
            problems.append(f"keyring chain loops back to policy {old.hash[:12]}; stopped there")
            break
        seen.add(old.hash)
        found.append((old, old_secret))
        cur, cur_secret = old, old_secret
    return found


@dataclass
class CaseKeys:
    """Every release key of a case, newest first, and the stores to read its deposits from."""

    secrets: list[bytes]
    urls: list[str]

    def identities(self) -> list[str]:
        """The keys as age identities, as `vault.recover.restore` takes them."""
        return [age_identity_str(s) for s in self.secrets]


def case_keys(
    policy: Policy,
    secret: bytes,
    box_key: Any,
    problems: list[str],
    *,
    stores: Sequence[str] = (),
    s3_endpoint: str | None = None,
) -> CaseKeys:
    """The recovered key plus the older keys its keyrings open, and where to read.

    `velador recover` and the browser's recovery both call this, so that both read deposits
    made before a `case rotate` the same way (docs/decisions.md §9). Stores given by the person
    (`--store`) replace the policy's and are the only ones read; otherwise the stores of the
    older policies are added after the current ones. `problems` receives what `older_keys` says.
    """
    urls = list(stores) or list(policy.stores)
    older = older_keys(
        policy, secret, [open_store(u, s3_endpoint=s3_endpoint) for u in urls], box_key, problems
    )
    if not stores:
        urls += [u for old, _s in older for u in old.stores if u not in urls]
    return CaseKeys([secret, *(s for _o, s in older)], urls)
