"""SLIP-39 splitting of the case release secret (docs/format.md §5).

The release secret is 32 random bytes. Its age identity is the bech32 encoding of those bytes
with the HRP `age-secret-key-` (upper-cased), exactly as age-keygen writes it, so an outlet that
recovers the secret can hand the key to the stock `age` tool. Splitting uses SLIP-39 through
`shamir-mnemonic`: checksummed word lists, a digest that detects a wrong combination, and
two-level groups.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import bech32
import shamir_mnemonic
from pyrage import x25519

from .constants import RELEASE_SECRET_BYTES, SLIP39_ITERATION_EXPONENT
from .errors import N_, FormatError, ShareError

_AGE_HRP = "age-secret-key-"
_MAX_COMBINATIONS = 5000


@dataclass(frozen=True)
class ShareSpec:
    """How the secret is split: `group_threshold` of the `groups`, each (threshold, members)."""

    group_threshold: int
    groups: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.groups or len(self.groups) > 16:
            raise ShareError(N_("there must be 1 to 16 share groups"))
        if not 1 <= self.group_threshold <= len(self.groups):
            raise ShareError(N_("the group threshold must be between 1 and the number of groups"))
        for k, n in self.groups:
            if not (1 <= k <= n <= 16):
                raise ShareError(
                    N_("a group of %(n)s with threshold %(k)s is not possible (1 <= K <= N <= 16)"),
                    n=n,
                    k=k,
                )
            if k == 1 and n > 1:
                # SLIP-39 forbids 1-of-N groups with N > 1; the same effect is N copies of 1-of-1.
                raise ShareError(
                    N_("SLIP-39 does not allow a threshold of 1 in a group of several shares"),
                    hint=N_("use a threshold of at least 2, or several groups of one share"),
                )

    @property
    def total(self) -> int:
        return sum(n for _, n in self.groups)

    def describe(self) -> str:
        if len(self.groups) == 1:
            k, n = self.groups[0]
            return f"{k} of {n}"
        parts = ", ".join(f"{k} of {n}" for k, n in self.groups)
        return f"{self.group_threshold} of the groups ({parts})"


def parse_groups(text: str, group_threshold: int | None) -> ShareSpec:
    """Parse the CLI's `--groups 2of3,1of1` form."""
    groups = []
    for part in text.split(","):
        k, sep, n = part.strip().lower().partition("of")
        if not sep or not k.isdigit() or not n.isdigit():
            raise ShareError(
                N_("cannot read group %(part)r"), hint=N_("write groups like 2of3,1of2"), part=part
            )
        groups.append((int(k), int(n)))
    return ShareSpec(group_threshold or len(groups), tuple(groups))


def new_release_secret() -> bytes:
    return secrets.token_bytes(RELEASE_SECRET_BYTES)


def age_identity_str(secret: bytes) -> str:
    """The age X25519 identity (AGE-SECRET-KEY-1...) for a 32-byte release secret."""
    if len(secret) != RELEASE_SECRET_BYTES:
        raise ValueError("release secret must be 32 bytes")
    data = bech32.convertbits(list(secret), 8, 5, True)
    return bech32.bech32_encode(_AGE_HRP, data).upper()


def age_identity(secret: bytes) -> x25519.Identity:
    return x25519.Identity.from_str(age_identity_str(secret))


def age_recipient_str(secret: bytes) -> str:
    return str(age_identity(secret).to_public())


def split(secret: bytes, spec: ShareSpec) -> list[list[str]]:
    """Split `secret` into SLIP-39 mnemonics, one list per group."""
    return shamir_mnemonic.generate_mnemonics(
        spec.group_threshold,
        list(spec.groups),
        secret,
        passphrase=b"",
        extendable=True,
        iteration_exponent=SLIP39_ITERATION_EXPONENT,
    )


def check_mnemonic(mnemonic: str) -> shamir_mnemonic.Share:
    """Parse one mnemonic; a typo or corruption fails the RS1024 checksum here."""
    try:
        return shamir_mnemonic.Share.from_mnemonic(mnemonic)
    except shamir_mnemonic.MnemonicError as exc:
        # The library's message quotes the words; errors must never carry share material.
        raise FormatError(N_("share is not a valid SLIP-39 mnemonic (checksum or format)")) from exc


def combine(mnemonics: Sequence[str]) -> bytes:
    """Combine exactly the given mnemonics; raises ShareError if they do not make a secret."""
    try:
        secret = shamir_mnemonic.combine_mnemonics(list(mnemonics), passphrase=b"")
    except shamir_mnemonic.MnemonicError as exc:
        raise ShareError(
            N_("the shares do not combine into one secret"),
            hint=N_(
                "some shares may belong to another case or version; check them with the reporter"
            ),
        ) from exc
    if len(secret) != RELEASE_SECRET_BYTES:
        raise ShareError(N_("the shares combine into a secret of the wrong size"))
    return secret


def combine_any(mnemonics: Iterable[str], expected_recipient: str) -> tuple[bytes, list[str]]:
    """Find a combination of the mnemonics whose secret matches `expected_recipient`.

    Shares that passed signature checks can still disagree (a reporter bug, a rotated case).
    SLIP-39's digest rejects most wrong combinations; the age recipient in the signed policy is
    the final check. Returns the secret and the mnemonics that made it.
    """
    shares = []
    for m in dict.fromkeys(mnemonics):  # de-duplicate, keep order
        try:
            shares.append((m, check_mnemonic(m)))
        except FormatError:
            continue
    try:
        secret = combine([m for m, _ in shares])
        if age_recipient_str(secret) == expected_recipient:
            return secret, [m for m, _ in shares]
    except ShareError:
        pass
    # Fall back to trying the minimal subsets, group by group.
    tried = 0
    by_group: dict[int, list[tuple[str, shamir_mnemonic.Share]]] = {}
    for m, s in shares:
        by_group.setdefault(s.group_index, []).append((m, s))
    if not shares:
        raise ShareError(
            N_("no valid shares"), hint=N_("check that the share files belong to this case")
        )
    first = shares[0][1]
    gthr = first.group_threshold
    group_choices = []
    for members in by_group.values():
        k = members[0][1].member_threshold
        # At most one more than the search allows: forged members must not make it allocate
        # every combination before the limit applies (40 members, k=8: 77 million).
        group_choices.append(
            list(itertools.islice(itertools.combinations(members, k), _MAX_COMBINATIONS + 1))
            if len(members) >= k
            else []
        )
    usable = [g for g in group_choices if g]
    for groups in itertools.combinations(usable, gthr):
        for pick in itertools.product(*groups):
            tried += 1
            if tried > _MAX_COMBINATIONS:
                raise ShareError(N_("too many inconsistent shares to search"))
            chosen = [m for combo in pick for m, _ in combo]
            try:
                secret = combine(chosen)
            except ShareError:
                continue
            if age_recipient_str(secret) == expected_recipient:
                return secret, chosen
    raise ShareError(
        N_("no combination of the valid shares gives this case's key"),
        hint=N_("some shares may belong to another case or version; check them with the reporter"),
    )
