"""Recovery over the escrow network (brief §3 step 5; docs/format.md §9; docs/protocol.md §4.6).

    ref = case_ref(text, known_nodes)            # a case card, or a case id + the nodes you know
    found = gather(ref, identity, clock)         # every node asked in parallel, each one judged
    secret = combine_released(found)             # any valid K, or a PolicyError naming the rest

then `vault.recover.restore` fetches, decrypts and writes, exactly as for offline share files.

Every node is untrusted. A node's answer counts only if the reporter-signed policy it serves is
the one the case card pins (or, given only a case id, the one most nodes serve), names that node
as a share holder, and lists this outlet as a recipient; each envelope counts only if both of its
reporter-signed layers open and verify and it carries a share the policy assigns to that node. A
node that is down, has not released, or serves a forged, altered or foreign envelope is named in
`NodeResult.detail` and skipped; it never stops the others.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .cards import Card
from .clock import Clock
from .envelope import addressed_to, open_envelope
from .errors import (
    N_,
    AuthenticationError,
    NodeError,
    Note,
    NotFoundError,
    PolicyError,
    ShareError,
    VeladorError,
)
from .identity import Identity
from .policy import Policy, replacement_path
from .recover import Report, recover_key

if TYPE_CHECKING:
    from .case import ShareBundle

DEFAULT_TIMEOUT = 10.0
_CASE_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")

# NodeResult.outcome values
RELEASED = "released"
NOT_RELEASED = "not released"
UNREACHABLE = "unreachable"
REFUSED = "refused"
NO_CASE = "does not hold the case"
BAD = "lying"


@dataclass(frozen=True)
class CaseRef:
    """What the outlet knows before asking: the case id, which nodes to ask, maybe a pin."""

    case_id: str
    nodes: tuple[Card, ...]
    policy_hash: str | None = None
    """From a case card: only this exact signed policy is accepted."""
    stores: tuple[str, ...] = ()
    reporters: frozenset[bytes] = frozenset()
    """Signing keys of the reporters in your contacts: preferred when nothing is pinned."""


@dataclass
class NodeResult:
    node: Card
    outcome: str
    detail: str = ""
    released_at: int | None = None
    policy: Policy | None = None
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    shares: list[str] = field(default_factory=list)
    """Holder ids whose share from this node opened and verified."""
    state: str | None = None
    """The case state a node that has not released reported (ARMED, OVERDUE, DESTROYED...)."""
    chain: tuple[Policy, ...] = ()
    """Earlier versions of its policy the node served, newest first (format.md §9.5)."""

    @property
    def name(self) -> str:
        return self.node.name

    def describe(self) -> str:
        return f"{self.name} ({self.outcome}{': ' + self.detail if self.detail else ''})"

    def describe_note(self) -> Note:
        """`describe` as a Note: the outcome word is translated where it is shown (the words are
        cli/data_cmds.OUTCOMES); the detail is the node's or this module's English text."""
        if self.detail:
            return Note(
                N_("%(node)s (%(outcome)s: %(detail)s)"),
                node=self.name,
                outcome=Note(self.outcome),
                detail=self.detail,
            )
        return Note("%(node)s (%(outcome)s)", node=self.name, outcome=Note(self.outcome))


@dataclass
class Gathered:
    """The outcome of asking every node: the policy they agree on and what each one served."""

    ref: CaseRef
    policy: Policy | None
    results: list[NodeResult]
    mnemonics: list[str] = field(default_factory=list)
    report: Report = field(default_factory=Report)

    def of_case(self) -> list[NodeResult]:
        """Results of the nodes that hold a share of the case (others are just contacts)."""
        if self.policy is None:
            return list(self.results)
        keys = {c.sign_pk for c in self.policy.nodes}
        return [r for r in self.results if r.node.sign_pk in keys]

    @property
    def chosen_by(self) -> str:
        """Why this policy is trusted (decisions.md (10), issue 11 finding 6): "card" (pinned
        by the case card, or reached through the reporter's replacements), "contact" (signed by
        a reporter in your contacts) or "majority" (a bare case id and an unknown reporter: the
        version most nodes serve, which the reader must check by the reporter's fingerprint)."""
        if self.ref.policy_hash:
            return "card"
        if self.policy is not None and self.policy.reporter.sign_pk in self.ref.reporters:
            return "contact"
        return "majority"

    def serving(self) -> tuple[int, int]:
        """(nodes serving the chosen policy, nodes that served a released policy at all)."""
        served = [r for r in self.results if r.policy is not None]
        same = [r for r in served if self.policy is not None and r.policy.hash == self.policy.hash]
        return len(same), len(served)

    def released(self) -> list[NodeResult]:
        return [r for r in self.of_case() if r.outcome == RELEASED and r.shares]

    def skipped(self) -> list[NodeResult]:
        return [r for r in self.of_case() if not (r.outcome == RELEASED and r.shares)]


# --- which case, which nodes -----------------------------------------------------------------


def is_case_id(text: str) -> bool:
    return 8 <= len(text) <= 64 and set(text) <= _CASE_ID_CHARS


def case_ref(text: str, known_nodes: Sequence[Card], reporters: Sequence[Card] = ()) -> CaseRef:
    """A case card (from the reporter) or a bare case id (then ask every node you know)."""
    text = text.strip()
    keys = frozenset(c.sign_pk for c in reporters)
    if is_case_id(text):
        if not known_nodes:
            raise NotFoundError(
                N_("you know no escrow node to ask about case %(text)s"),
                hint=N_(
                    "add the case's nodes with 'velador contact add NODE_CARD --alias NAME', or "
                    "pass the case card instead of the id"
                ),
                text=text,
            )
        return CaseRef(text, tuple(known_nodes), reporters=keys)
    return replace(ref_from_card(text), reporters=keys)


def contacts_ref(text: str, contacts: Sequence[Card]) -> CaseRef:
    """`case_ref` from your contacts: their nodes are asked about a bare case id, and their
    reporters' keys are trusted before a majority of nodes (`Gathered.chosen_by`). The CLI and the
    browser app (`velador recover`, the outlet's and the editor's pages) read a case this way."""
    return case_ref(
        text,
        [c for c in contacts if c.role == "node"],
        [c for c in contacts if c.role == "reporter"],
    )


def ref_from_card(text: str) -> CaseRef:
    """A case card from `velador case card` (vault.switch is its one parser)."""
    from .switch import parse_case_card

    card = parse_case_card(text)
    return CaseRef(card.case_id, tuple(card.nodes), card.policy_hash, tuple(card.stores))


# --- asking the nodes --------------------------------------------------------------------------


def _judge(card: Card, error: VeladorError | None, body: dict[str, Any] | None) -> NodeResult:
    """One node's answer to GET /v1/cases/{id}/release, as an outcome with its reason."""
    if error is None:
        assert body is not None
        rel = body["release"]
        return NodeResult(
            card,
            RELEASED,
            "",
            rel.released_at,
            rel.policy,
            list(rel.envelopes),
            chain=tuple(rel.chain),
        )
    message = _short(error.message, card)
    if isinstance(error, NotFoundError):
        return NodeResult(card, NO_CASE)
    if isinstance(error, PolicyError):
        if getattr(error, "code", None) == "forbidden":
            return NodeResult(card, REFUSED, "you are not a recipient of this case")
        m = re.search(r"\(state ([A-Z_]+)\)", error.message)
        state = m.group(1) if m else None
        detail: str = message
        if state and message == f"the case is not released (state {state})":
            # The node's English words (escrow_node/operations.py), kept as a Note so that a
            # Spanish reader does not get them inside a Spanish sentence.
            detail = Note(N_("the case is not released (state %(state)s)"), state=state)
        return NodeResult(card, NOT_RELEASED, detail, state=state)
    if isinstance(error, AuthenticationError):
        return NodeResult(card, REFUSED, message)
    if isinstance(error, NodeError) and "invalid release" not in error.message:
        # Unreachable, timed out, or a 5xx; the URL says which address was tried.
        return NodeResult(card, UNREACHABLE, str(error.params.get("url") or error.hint or message))
    # A release whose policy or envelopes did not verify (vault.nodeproto.client.fetch_release).
    return NodeResult(card, BAD, message)


def _short(message: str, card: Card) -> str:
    """'node X: the case is not released (state ARMED)' -> 'the case is not released (...)'."""
    for prefix in (f"node {card.name}: ", f"node {card.name} "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def ask_nodes(
    cards: Sequence[Card], case_id: str, identity: Identity, clock: Clock, timeout: float
) -> list[NodeResult]:
    """Every node at once (vault.switch.fan_out: one thread and one client per node)."""
    from .switch import fan_out

    answers = fan_out(
        cards, identity, clock, lambda c: {"release": c.fetch_release(case_id)}, timeout
    )
    return [_judge(c, a.error, a.body) for c, a in zip(cards, answers, strict=True)]


def _pick_policy(ref: CaseRef, results: list[NodeResult], me: Card) -> Policy | None:
    """The policy to trust; every released answer that does not fit it is marked as lying."""
    served = [r for r in results if r.outcome == RELEASED and r.policy is not None]
    for r in served:
        assert r.policy is not None
        if r.policy.case_id != ref.case_id:
            r.outcome, r.detail = BAD, "serves the policy of another case"
        elif ref.policy_hash and replacement_path(r.policy, ref.policy_hash, r.chain) is None:
            # The pinned policy, or a chain of replacements signed by its reporter back to it
            # (format.md §9.5): a card stays good through any number of rotations.
            r.outcome, r.detail = BAD, "serves a policy that is not the one on the case card"
        elif not r.policy.holders_of(r.node.sign_pk):
            r.outcome, r.detail = BAD, "is not a share holder in the policy it serves"
        elif r.policy.recipient_by_fingerprint(me.fingerprint) is None:
            r.outcome, r.detail = BAD, "serves a policy that does not name you as a recipient"
    served = [r for r in served if r.outcome == RELEASED]
    if not served:
        return None
    # Without a pin, a policy signed by a reporter in your contacts wins over one that is not,
    # then the version most nodes serve; the others are named, never merged.
    counts = Counter(r.policy.hash for r in served if r.policy is not None)
    known = {
        r.policy.hash
        for r in served
        if r.policy is not None and r.policy.reporter.sign_pk in ref.reporters
    }
    best_hash = max(counts, key=lambda h: (h in known, counts[h], h))
    policy = next(r.policy for r in served if r.policy is not None and r.policy.hash == best_hash)
    for r in served:
        if r.policy is not None and r.policy.hash != best_hash:
            r.outcome, r.detail = BAD, "serves a different version of the case policy"
    return policy


def _open_shares(found: Gathered, identity: Identity) -> None:
    policy = found.policy
    assert policy is not None
    for r in found.results:
        if r.outcome != RELEASED:
            continue
        mine = {h.id for h in policy.holders_of(r.node.sign_pk)}
        problems: list[str] = []
        for env in r.envelopes:
            if not addressed_to(env, identity.card):
                continue
            try:
                opened = open_envelope(env, policy, identity.box_key)
            except VeladorError as exc:
                problems.append(f"served a forged or altered envelope: {exc.message}")
                continue
            if opened.holder not in mine:
                problems.append(
                    f"served the share of holder {opened.holder}, which it does not hold"
                )
                continue
            if opened.holder in r.shares:
                continue
            r.shares.append(opened.holder)
            found.mnemonics.append(opened.mnemonic)
            found.report.shares_used.append(f"node {r.name} (holder {opened.holder})")
        if problems:
            r.detail = problems[0]
            found.report.shares_skipped.append(f"node {r.name}: {problems[0]}")
            if not r.shares:
                r.outcome = BAD
        elif not r.shares:
            r.outcome, r.detail = BAD, "released but served no envelope addressed to you"
    for r in found.skipped():
        if r.outcome != RELEASED:
            found.report.shares_skipped.append(f"node {r.describe()}")


def gather(
    ref: CaseRef,
    identity: Identity,
    clock: Clock,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Gathered:
    """Ask the nodes of `ref`, then any further node the trusted policy names; open the shares."""
    results = ask_nodes(ref.nodes, ref.case_id, identity, clock, timeout)
    policy = _pick_policy(ref, results, identity.card)
    if policy is not None:
        asked = {r.node.sign_pk for r in results}
        more = [c for c in policy.nodes if c.sign_pk not in asked]
        if more:
            results += ask_nodes(more, ref.case_id, identity, clock, timeout)
            policy = _pick_policy(ref, results, identity.card)
    found = Gathered(ref, policy, results)
    if policy is not None:
        _open_shares(found, identity)
    return found


def add_offline(
    found: Gathered, policy: Policy, envelopes: list[tuple[str, Any]], me: Identity
) -> list[str]:
    """Shares from offline holders' files beside the nodes'; returns what was skipped and why."""
    ref = found.ref
    skipped: list[str] = []
    if found.policy is None:
        pinned = ref.policy_hash in (None, policy.hash, policy.replaces)
        if policy.case_id != ref.case_id or not pinned:
            skipped.append("the share files: they belong to another case")
            found.report.shares_skipped += skipped
            return skipped
        found.policy = policy
    elif policy.case_id != found.policy.case_id:
        skipped.append("the share files: they belong to another case")
        found.report.shares_skipped += skipped
        return skipped
    elif policy.hash != found.policy.hash:
        skipped.append("the share files: they belong to another version of the case policy")
        found.report.shares_skipped += skipped
        return skipped
    offline = {h.id for h in found.policy.holders if h.kind == "offline"}
    for src, env in envelopes:
        if not addressed_to(env, me.card):
            continue
        try:
            opened = open_envelope(env, found.policy, me.box_key)
        except VeladorError as exc:
            skipped.append(f"share file {src}: {exc.message}")
            continue
        if opened.holder not in offline:
            skipped.append(f"share file {src}: holder {opened.holder} is not an offline holder")
            continue
        found.mnemonics.append(opened.mnemonic)
        found.report.shares_used.append(f"{src} (holder {opened.holder})")
    found.report.shares_skipped += skipped
    return skipped


# --- deciding ----------------------------------------------------------------------------------


def _names(results: list[NodeResult]) -> Note | str:
    """'node-a (unreachable: ...), node-b (not released: ...)' for an error's message: in English
    as `describe` says it, and as a Note so the outcome words are translated where it is shown."""
    if not results:
        return ""
    parts = {f"n{i}": r.describe_note() for i, r in enumerate(results)}
    return Note(", ".join(f"%({k})s" for k in parts), **parts)


def combine_released(found: Gathered, identity: Identity) -> bytes:
    """The release secret from any valid K shares, or an error that says who has not released."""
    ref = found.ref
    if found.policy is None:
        _raise_nothing(found, identity)
    policy = found.policy
    assert policy is not None
    try:
        return recover_key(policy, found.mnemonics, found.report)
    except ShareError as exc:
        holders = policy.nodes
        released = found.released()
        skipped = found.skipped()
        need = policy.spec.describe()
        if not skipped:
            raise  # every node released and still no key: the shares themselves are wrong
        raise ShareError(
            N_(
                "only %(count)s of the %(total)s nodes of case %(case_id)s have released a valid "
                "share (%(need)s needed); not yet: %(names)s"
            ),
            hint=N_(
                "wait for more nodes to release ('velador inbox' shows their notices), or ask the "
                "case's editors for a release"
            ),
            count=len(released),
            total=len(holders),
            case_id=ref.case_id,
            need=need,
            names=_names(skipped),
        ) from exc


def _raise_nothing(found: Gathered, identity: Identity) -> None:
    """No node served a usable release: say why in the most useful terms."""
    ref = found.ref
    results = found.results
    holding = [r for r in results if r.outcome != NO_CASE]
    if not holding:
        # A node answers the same for a case it does not hold and for a key the case does not
        # name (docs/protocol.md §2.4), so both are possible here.
        raise NotFoundError(
            N_("none of the %(count)s node(s) asked holds case %(case_id)s"),
            hint=N_(
                "check the case id, or recover with the case card the reporter gave you; nodes "
                "answer the same way to a key that is not a recipient of the case (yours is "
                "%(fingerprint)s)"
            ),
            count=len(results),
            case_id=ref.case_id,
            fingerprint=identity.fingerprint,
        )
    if all(r.outcome == REFUSED for r in holding):
        raise AuthenticationError(
            N_(
                "you are not a recipient of case %(case_id)s: %(count)s node(s) refused to serve "
                "you its envelopes"
            ),
            hint=N_(
                "your fingerprint is %(fingerprint)s; only the outlets the reporter named can "
                "recover this case"
            ),
            case_id=ref.case_id,
            count=len(holding),
            fingerprint=identity.fingerprint,
        )
    if all(r.outcome == UNREACHABLE for r in holding):
        raise NodeError(
            N_("no node of case %(case_id)s could be reached: %(names)s"),
            hint=N_("check your network connection (or Tor), then run the command again"),
            case_id=ref.case_id,
            names=_names(holding),
        )
    if all(r.state == "DESTROYED" for r in holding):
        raise NotFoundError(
            N_(
                "case %(case_id)s was destroyed: the %(count)s node(s) that held it have deleted "
                "its envelopes"
            ),
            hint=N_(
                "nothing can be recovered from the nodes; ask the case's offline share holders, "
                "if it had any (--shares DIR)"
            ),
            case_id=ref.case_id,
            count=len(holding),
        )
    if all(r.outcome == BAD for r in holding):
        raise AuthenticationError(
            N_("no node of case %(case_id)s served a release that verifies: %(names)s"),
            hint=N_("compare the case card (policy hash) with the reporter or another recipient"),
            case_id=ref.case_id,
            names=_names(holding),
        )
    raise ShareError(
        N_("no node has released case %(case_id)s yet: %(names)s"),
        hint=N_("wait for the release notice ('velador inbox'), or ask the case's editors"),
        case_id=ref.case_id,
        names=_names(holding),
    )


def released_secret(
    ref: CaseRef,
    identity: Identity,
    clock: Clock,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    offline: ShareBundle | None = None,
) -> tuple[Gathered, bytes, list[str]]:
    """The whole network half of `velador recover CASE` (and of the browser's recovery), in
    one place so both trust the same answers: ask the nodes, add the offline share files of
    `offline` (`--shares DIR`), combine any valid K shares, and record in the report why the
    policy was trusted (card, contact or majority: the reader is warned of a majority).

    Returns (what each node served, the release secret, the offline files skipped and why). The
    secret is the caller's to use and drop; a failure raises what `combine_released` says."""
    found = gather(ref, identity, clock, timeout=timeout)
    skipped: list[str] = []
    if offline is not None:
        found.report.shares_skipped.extend(offline.rejected)
        skipped = add_offline(found, offline.policy, offline.envelopes, identity)
    secret = combine_released(found, identity)  # an error here names every node that failed
    agreeing, serving = found.serving()
    found.report.policy_choice = {"by": found.chosen_by, "agreeing": agreeing, "serving": serving}
    return found, secret, skipped


def node_summary(found: Gathered) -> list[dict[str, Any]]:
    """One row per node of the case for the provenance report and --json."""
    return [
        {
            "node": r.name,
            "fingerprint": r.node.fingerprint,
            "outcome": r.outcome,
            "detail": r.detail,
            "released_at": r.released_at,
            "shares": list(r.shares),
        }
        for r in found.of_case()
    ]
