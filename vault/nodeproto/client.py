"""Synchronous, thread-safe client for one escrow node (docs/protocol.md §4).

    client = NodeClient(node_card, identity, clock, timeout=10.0)
    receipt = client.heartbeat(make_heartbeat(policy, identity.sign_key, seq, clock.now()))

Every request is signed (auth.sign_request) with the caller's identity and bound to the node's
key; every signed answer (receipt, status, custody, notice) is verified against the node card's
key before it is returned. Errors are always vault errors, never httpx ones:

    NodeError             the node is unreachable, times out, or answers 5xx / garbage; an
                          answer not complete within `timeout` seconds (wall clock) or larger
                          than `max_answer` bytes; an onion URL with no proxy
    AuthenticationError   401, or an answer not signed by the node's key
    PolicyError           403, 409, 429 (the node's error text is the message)
    NotFoundError         404 (unknown case)
    FormatError           400, 413 (the request was malformed or too large)

`timeout` bounds each whole request, from connecting to the last byte of the answer, however
slowly a node drips (vault.nodeproto.transport; docs/protocol.md §4.9). Connections go through
`proxy` (a SOCKS5 URL such as Tor's), by default the process-wide one the CLI sets from
--proxy / VELADOR_PROXY (docs/protocol.md §4.9).

One instance may be shared by threads (httpx.Client is thread-safe); the CLI fans out to nodes
with a ThreadPoolExecutor, one client per node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from vault.cards import Card, parse_card
from vault.clock import Clock, SystemClock
from vault.encoding import b64e, canonical_json, parse_json
from vault.envelope import check_envelope
from vault.errors import (
    N_,
    AuthenticationError,
    FormatError,
    NodeError,
    NotFoundError,
    PolicyError,
    VeladorError,
)
from vault.identity import Identity
from vault.policy import MAX_CHAIN, Policy, parse_policy
from vault.signing import verify_document

from . import transport
from .auth import sign_request
from .messages import make_marker

MAX_ANSWER = transport.DEFAULT_MAX_ANSWER
_DEFAULT: Any = object()
PROXY_HINT = N_(
    "set a SOCKS5 proxy such as Tor: 'velador --proxy socks5h://127.0.0.1:9050' or "
    "VELADOR_PROXY for the command line, [network] proxy in node.toml for a node"
)

_NODE_ANSWERS: dict[Any, tuple[str, str | None]] = {
    # docs/protocol.md §2.4 error codes -> (message, hint), whole sentences with the node's
    # own text (`detail`) kept where it carries specifics.
    "unknown_case": (
        N_("node %(node)s holds no such case, or your key is not named in it"),
        N_("check the case id; only the people the case names can ask a node about it"),
    ),
    "unauthenticated": (
        N_("node %(node)s did not accept the signature of the request (%(detail)s)"),
        N_("check that this computer's clock is right and that you use the right identity"),
    ),
    "replay": (
        N_("node %(node)s had already received this exact request"),
        N_("run the command again"),
    ),
    "rate_limited": (
        N_("node %(node)s is receiving too many requests from your key"),
        N_("wait a minute, then run the command again"),
    ),
    "registration_closed": (
        N_("node %(node)s: this node accepts new cases only from reporters its operator admitted"),
        N_(
            "ask the node's operator for an invitation code and pass it with '--invite NODE' "
            "(see the reporter guide), or give them your key fingerprint %(fingerprint)s to admit"
        ),
    ),
    "invitation_refused": (
        N_(
            "node %(node)s: the invitation code is not valid: it is unknown, was already used, "
            "or has expired"
        ),
        N_("ask the node's operator for a new invitation code"),
    ),
    "too_large": (
        N_("node %(node)s refused a request that is too large (%(detail)s)"),
        None,
    ),
    "stale_heartbeat": (
        N_("node %(node)s already has a newer check-in (%(detail)s)"),
        N_("this is harmless when two check-ins cross; run the command again"),
    ),
}
"""Error codes a node sends (escrow_node/errors.py) that the client words itself."""


@dataclass(frozen=True)
class Release:
    """What a recipient gets from one node: the verified policy and its envelopes for them."""

    case_id: str
    node: str
    released_at: int
    policy: Policy
    envelopes: list[dict[str, Any]]
    chain: tuple[Policy, ...] = ()
    """Earlier versions of the policy the node knows, newest first, each signed by the same
    reporter (docs/protocol.md §4.6); vault.netrecover checks the links to a case card's pin."""


class NodeClient:
    def __init__(
        self,
        card_or_url: Card | str,
        identity: Identity | None,
        clock: Clock | None = None,
        timeout: float = 10.0,
        *,
        http: httpx.Client | None = None,
        url: str | None = None,
        proxy: str | None = _DEFAULT,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        """`card_or_url`: the node's card (keys pinned) or a bare URL (the card is fetched from
        GET /v1/card and trusted on first use; compare `client.card.fingerprint` aloud).
        `url` overrides the card's URL (e.g. an onion or internal address). `proxy`: a SOCKS5
        URL, None for direct connections, or (left out) the process default."""
        self.identity = identity
        self.clock = clock or SystemClock()
        self.proxy = (
            transport.default_proxy() if proxy is _DEFAULT else transport.check_proxy(proxy)
        )
        self._own_http = http is None
        self._http = http or transport.make_http(self.proxy, timeout)
        self.timeout = timeout
        self.max_answer = max_answer
        if isinstance(card_or_url, Card):
            self.card: Card = card_or_url
            base = url or card_or_url.url
            if not base:
                raise ValueError("node card has no URL")
            self.base = base.rstrip("/")
        else:
            self.base = (url or card_or_url).rstrip("/")
            self.card = self._fetch_card()

    @property
    def name(self) -> str:
        return self.card.name if hasattr(self, "card") else self.base

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        payload: Any = None,
        case_id: str | None = None,
        params: dict[str, str] | None = None,
        signed: bool = True,
    ) -> Any:
        body = b"" if payload is None else canonical_json(payload)
        query = str(httpx.QueryParams(params or {}))
        headers = {"Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        if signed:
            if self.identity is None:
                raise ValueError("this request needs an identity")
            headers["Authorization"] = sign_request(
                self.identity.sign_key,
                self.card.sign_pk,
                method,
                path,
                body,
                self.clock.now(),
                case_id,
                query,
            )
        url = self.base + path + (f"?{query}" if query else "")
        return self._answer(*self.exchange(method, url, body or None, headers))

    def exchange(
        self, method: str, url: str, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One bounded round trip (status, body): the only place this client touches the
        network. Errors are NodeError, naming the node but not the URL's path."""
        try:
            transport.route(url, self.proxy)
            return transport.fetch(
                self._http,
                method,
                url,
                content=content,
                headers=headers,
                timeout=self.timeout,
                max_bytes=self.max_answer,
            )
        except transport.ProxyRequired as exc:
            raise NodeError(
                N_("node %(node)s has an onion address and no Tor proxy is set"),
                hint=PROXY_HINT,
                node=self.name,
            ) from exc
        except transport.DeadlineExceeded as exc:
            raise NodeError(
                N_("node %(node)s did not answer completely within %(seconds)g s"),
                hint=N_("the node's address is %(url)s"),
                node=self.name,
                seconds=self.timeout,
                url=transport.safe_url(self.base),
            ) from exc
        except transport.AnswerTooLarge as exc:
            raise NodeError(
                N_("node %(node)s sent an oversized answer"),
                hint=N_("the node may be misconfigured; tell its operator"),
                node=self.name,
            ) from exc
        except transport.TransportError as exc:
            raise NodeError(
                N_("node %(node)s is unreachable through the proxy (%(reason)s)")
                if self.proxy
                else N_("node %(node)s is unreachable (%(reason)s)"),
                hint=N_("the node's address is %(url)s"),
                node=self.name,
                reason=exc.__cause__.__class__.__name__,
                url=transport.safe_url(self.base),
            ) from exc

    def _answer(self, status: int, content: bytes) -> Any:
        data: Any = None
        if len(content) > self.max_answer:
            raise NodeError(
                N_("node %(node)s sent an oversized answer"),
                hint=N_("the node may be misconfigured; tell its operator"),
                node=self.name,
            )
        try:
            data = parse_json(content, f"answer from node {self.name}") if content else None
        except FormatError:
            data = None
        if status < 300:
            if data is None:
                raise NodeError(
                    N_("node %(node)s sent an answer that is not JSON"),
                    hint=N_(
                        "the address may not be a Velador node, or a proxy answered instead; "
                        "check the node's card"
                    ),
                    node=self.name,
                )
            return data
        # The node's own text stays a value (never a template: it may hold a stray '%'); a
        # stable error code the client knows gets a sentence of its own, translatable here.
        body = data if isinstance(data, dict) else {}
        detail = body.get("message") if isinstance(body.get("message"), str) else None
        node_hint = body.get("hint") if isinstance(body.get("hint"), str) else None
        known = _NODE_ANSWERS.get(body.get("error")) if detail is not None else None
        message: str
        hint: str | None
        if known is not None:
            message, hint = known
        elif detail is not None:
            message = N_("node %(node)s: %(detail)s")
            hint = N_("the node says: %(node_hint)s") if node_hint else None
        else:
            message, hint = N_("node %(node)s answered %(status)s"), None
        code = status
        err: type[VeladorError]
        if code == 401:
            err = AuthenticationError
        elif code == 404:
            err = NotFoundError
        elif code in (400, 413, 422):
            err = FormatError
        elif code in (403, 409, 429):
            err = PolicyError
        else:
            err = NodeError
        exc = err(
            message,
            hint=hint,
            node=self.name,
            status=status,
            detail=(detail or "")[:500],
            node_hint=(node_hint or "")[:500],
            fingerprint=getattr(self.identity, "fingerprint", "?"),
        )
        exc.status = code  # type: ignore[attr-defined]
        exc.code = data.get("error") if isinstance(data, dict) else None  # type: ignore[attr-defined]
        raise exc

    def _verified(self, doc: Any, kind: str, case_id: str | None = None) -> dict[str, Any]:
        try:
            body = verify_document(
                doc, kind, self.card.sign_pk, what=f"{kind} from node {self.name}"
            )
        except FormatError as exc:
            raise NodeError(
                N_("node %(node)s sent a malformed %(kind)s"), node=self.name, kind=kind
            ) from exc
        if not isinstance(body, dict) or body.get("node") != self.card.fingerprint:
            raise AuthenticationError(
                N_("%(kind)s from node %(node)s names another node"), kind=kind, node=self.name
            )
        if case_id is not None and body.get("case_id") != case_id:
            raise AuthenticationError(
                N_("%(kind)s from node %(node)s is for another case"), kind=kind, node=self.name
            )
        return body

    def _fetch_card(self) -> Card:
        data = self._send("GET", "/v1/card", signed=False)
        try:
            card = parse_card(data["card"] if isinstance(data, dict) else "")
        except (FormatError, KeyError) as exc:
            raise NodeError(N_("node at %(url)s sent an invalid card"), url=self.base) from exc
        if card.role != "node":
            raise NodeError(N_("%(url)s is not an escrow node"), url=self.base)
        return card

    def _marker(self) -> str:
        """This identity's duress marker for this node (docs/protocol.md §3.2), on every status
        and action request, normal or not, so that both look alike on the wire."""
        return make_marker(self.card.box_pk, bool(getattr(self.identity, "duress", False)))

    # --- endpoints ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /v1/health (unsigned)."""
        return self._send("GET", "/v1/health", signed=False)

    def register_case(
        self,
        policy: Policy | dict[str, Any],
        envelopes: list[dict[str, Any]],
        chain: list[Policy] | None = None,
        *,
        invitation: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/cases: the signed policy plus this node's envelopes; the receipt body.

        `chain`: earlier versions, newest first, so a node that missed rotations can follow
        `replaces` from `policy` to the version it holds (docs/protocol.md §4.1).
        `invitation` is this node's single-use code when its registration is closed
        (docs/protocol.md §4.1.1); it travels only in the signed request body."""
        doc = policy.doc if isinstance(policy, Policy) else policy
        case_id = doc["body"]["case_id"]
        payload: dict[str, Any] = {
            "policy": doc,
            "envelopes": envelopes,
            "marker": self._marker(),
        }
        if chain:
            payload["chain"] = [p.doc for p in chain[:MAX_CHAIN]]
        if invitation is not None:
            payload["invitation"] = invitation
        data = self._send("POST", "/v1/cases", payload, case_id)
        return self._verified(data, "receipt", case_id)

    def heartbeat(self, heartbeat: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/cases/{id}/heartbeat with a doc from messages.make_heartbeat; the receipt."""
        case_id = heartbeat["body"]["case_id"]
        data = self._send("POST", f"/v1/cases/{case_id}/heartbeat", heartbeat, case_id)
        body = self._verified(data, "receipt", case_id)
        if body.get("seq") != heartbeat["body"]["seq"]:
            raise AuthenticationError(
                N_("receipt from node %(node)s is for another heartbeat"), node=self.name
            )
        return body

    def latest_heartbeat(self, case_id: str) -> dict[str, Any] | None:
        """GET /v1/cases/{id}/heartbeat (peer nodes and the reporter): the last heartbeat doc."""
        data = self._send("GET", f"/v1/cases/{case_id}/heartbeat", case_id=case_id)
        hb = data.get("heartbeat") if isinstance(data, dict) else None
        return hb if isinstance(hb, dict) else None

    def status(self, case_id: str) -> dict[str, Any]:
        params = {"marker": self._marker()} if self.identity is not None else None
        data = self._send("GET", f"/v1/cases/{case_id}", case_id=case_id, params=params)
        return self._verified(data, "status", case_id)

    def _action(self, case_id: str, action: str, payload: Any = None) -> dict[str, Any]:
        payload = dict(payload or {}, marker=self._marker())
        data = self._send("POST", f"/v1/cases/{case_id}/{action}", payload, case_id)
        return self._verified(data, "receipt", case_id)

    def pause(self, case_id: str, until: int) -> dict[str, Any]:
        return self._action(case_id, "pause", {"until": until})

    def resume(self, case_id: str) -> dict[str, Any]:
        return self._action(case_id, "resume")

    def destroy(self, case_id: str) -> dict[str, Any]:
        return self._action(case_id, "destroy")

    def release_now(self, case_id: str) -> dict[str, Any]:
        return self._action(case_id, "release-now")

    def release_request(self, case_id: str, reason: str = "") -> dict[str, Any]:
        """An editor asks for a release (counts toward the policy's editor quorum)."""
        return self._action(case_id, "release-request", {"reason": reason})

    def object(self, case_id: str) -> dict[str, Any]:
        """The reporter cancels a pending editor release inside the objection window."""
        return self._action(case_id, "object")

    def fetch_release(self, case_id: str) -> Release:
        """GET /v1/cases/{id}/release (recipient): policy and envelopes, outer layers checked."""
        data = self._send("GET", f"/v1/cases/{case_id}/release", case_id=case_id)
        try:
            policy = parse_policy(data["policy"])
            if policy.case_id != case_id:
                raise FormatError(N_("policy is for another case"))
            envs = data["envelopes"]
            if not isinstance(envs, list):
                raise FormatError(N_("envelopes must be a list"))
            for env in envs:
                check_envelope(env, policy)
            raw = data.get("chain") or []
            if not isinstance(raw, list) or len(raw) > MAX_CHAIN:
                raise FormatError(
                    N_("chain must be a list of at most %(limit)s policies"),
                    limit=MAX_CHAIN,
                )
            chain = tuple(parse_policy(d, policy.reporter.sign_pk) for d in raw)
            return Release(
                case_id, str(data.get("node")), int(data["released_at"]), policy, envs, chain
            )
        except (KeyError, TypeError, ValueError, FormatError, AuthenticationError) as exc:
            raise NodeError(
                N_("node %(node)s sent an invalid release (%(error)s)"),
                node=self.name,
                error=str(exc),
            ) from exc

    def custody(self, case_id: str, nonce: bytes) -> dict[str, Any]:
        """GET /v1/cases/{id}/custody?nonce=...: compare `digest` with messages.custody_digest."""
        params = {"nonce": b64e(nonce)}
        if self.identity is not None:  # the duress marker, as on a status request (§3.2)
            params["marker"] = self._marker()
        data = self._send("GET", f"/v1/cases/{case_id}/custody", case_id=case_id, params=params)
        body = self._verified(data, "custody", case_id)
        if body.get("nonce") != b64e(nonce):
            raise AuthenticationError(
                N_("custody proof from node %(node)s is for another nonce"), node=self.name
            )
        return body

    def signed_time(self, nonce: bytes) -> dict[str, Any]:
        """GET /v1/clock?nonce=... (unsigned request): the node's time, signed over our nonce,
        so an old answer cannot be replayed as a fresh one (docs/protocol.md §4.8)."""
        data = self._send("GET", "/v1/clock", params={"nonce": b64e(nonce)}, signed=False)
        body = self._verified(data, "clock")
        if body.get("nonce") != b64e(nonce) or not isinstance(body.get("time"), int):
            raise AuthenticationError(
                N_("clock from node %(node)s is for another nonce"), node=self.name
            )
        return body

    def subscribe(self, case_id: str, channel: str, target: str) -> dict[str, Any]:
        """Register an email address or webhook URL for this signer's notices on the case."""
        return self._send(
            "POST",
            f"/v1/cases/{case_id}/subscribe",
            {"channel": channel, "target": target},
            case_id,
        )

    def unsubscribe(self, case_id: str, channel: str, target: str) -> dict[str, Any]:
        return self._send(
            "POST",
            f"/v1/cases/{case_id}/unsubscribe",
            {"channel": channel, "target": target},
            case_id,
        )

    def inbox(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """GET /v1/inbox: notices addressed to this signer, each {"id", "notice": verified body}."""
        data = self._send("GET", "/v1/inbox", params={"after": str(after), "limit": str(limit)})
        items = data.get("notices", []) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise NodeError(
                N_("node %(node)s sent an invalid inbox (no list of notices)"), node=self.name
            )
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), int):
                raise NodeError(N_("node %(node)s sent an invalid inbox item"), node=self.name)
            body = self._verified(item.get("notice"), "notice")
            out.append({"id": item["id"], "notice": body})
        return out

    # --- drills (docs/protocol.md §11) -------------------------------------------------------

    def drill_start(self, case_id: str, drill: str) -> dict[str, Any]:
        """POST /v1/cases/{id}/drill (reporter): start drill `drill` at this node."""
        return self._action(case_id, "drill", {"drill": drill})

    def drill_challenge(self, case_id: str) -> dict[str, Any]:
        """GET /v1/cases/{id}/drill: the open drill and this signer's challenges (verified)."""
        data = self._send("GET", f"/v1/cases/{case_id}/drill", case_id=case_id)
        return self._verified(data, "drill", case_id)

    def drill_answer(self, case_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/cases/{id}/drill/answer: the receipt, with the proofs as recorded."""
        data = self._send("POST", f"/v1/cases/{case_id}/drill/answer", answer, case_id)
        return self._verified(data, "receipt", case_id)

    def drill_report(self, case_id: str, drill: str | None = None) -> dict[str, Any]:
        """GET /v1/cases/{id}/drill/report (reporter): this node's drill report (verified)."""
        params = {"drill": drill} if drill else None
        data = self._send(
            "GET", f"/v1/cases/{case_id}/drill/report", case_id=case_id, params=params
        )
        return self._verified(data, "drill-report", case_id)


def answer_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
