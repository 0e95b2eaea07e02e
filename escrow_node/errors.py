"""Node-side errors (docs/protocol.md §2.4), all subclasses of the vault error tree.

Each class carries the HTTP status the API answers with and a short machine-readable `code`:

    VeladorError
    ├── FormatError ─────── BadRequest (400 bad_request), BodyTooLarge (413 too_large)
    ├── AuthenticationError Unauthenticated (401 unauthenticated), Replay (409 replay)
    ├── PolicyError ─────── Forbidden (403 forbidden), Conflict (409 conflict),
    │                       RegistrationClosed (403 registration_closed),
    │                       InvitationRefused (403 invitation_refused),
    │                       StaleHeartbeat (409 stale_heartbeat), RateLimited (429 rate_limited)
    └── NotFoundError ───── UnknownCase (404 unknown_case)

The API maps any other VeladorError by its base class (see `status_of`).
"""

from __future__ import annotations

from vault.errors import (
    AuthenticationError,
    FormatError,
    NodeError,
    NotFoundError,
    PolicyError,
    VeladorError,
)


class BadRequest(FormatError):
    """The request body or parameters are malformed."""

    status = 400
    code = "bad_request"


class BodyTooLarge(FormatError):
    """The request body exceeds the size limit of its endpoint."""

    status = 413
    code = "too_large"


class Unauthenticated(AuthenticationError):
    """The request signature is missing, invalid, stale or for another node."""

    status = 401
    code = "unauthenticated"


class Replay(AuthenticationError):
    """The request nonce was already used inside the tolerance window."""

    status = 409
    code = "replay"


class Forbidden(PolicyError):
    """The signer is authenticated but the case policy does not allow it this action."""

    status = 403
    code = "forbidden"


class RegistrationClosed(Forbidden):
    """Registration is closed and the reporter's key is neither admitted nor invited
    (docs/protocol.md §4.1.1)."""

    code = "registration_closed"


class InvitationRefused(Forbidden):
    """The invitation code is unknown, wrong, already used or expired (one answer for all)."""

    code = "invitation_refused"


class Conflict(PolicyError):
    """The action is not allowed in the case's current state, or contradicts what is stored."""

    status = 409
    code = "conflict"


class StaleHeartbeat(Conflict):
    """A heartbeat whose sequence number is not newer than the last accepted one."""

    code = "stale_heartbeat"


class RateLimited(PolicyError):
    """Too many requests from one key."""

    status = 429
    code = "rate_limited"


class UnknownCase(NotFoundError):
    """This node holds no case with that id."""

    status = 404
    code = "unknown_case"


def no_case(case_id: str) -> UnknownCase:
    """The one answer for an unknown case id AND for a caller the case's policy does not name
    (docs/protocol.md §2.4): the same status and body, so a key outside a case cannot confirm
    that the case exists."""
    return UnknownCase(f"this node holds no case {case_id}")


class ConfigError(VeladorError):
    """The node's data folder or configuration file is missing or wrong."""

    exit_code = 78  # EX_CONFIG


_BY_BASE: tuple[tuple[type[VeladorError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (AuthenticationError, 401, "unauthenticated"),
    (PolicyError, 409, "conflict"),
    (FormatError, 400, "bad_request"),
    (NodeError, 502, "upstream"),
)


def status_of(exc: VeladorError) -> tuple[int, str]:
    """HTTP status and error code for an error raised while serving a request."""
    status = getattr(exc, "status", None)
    if status is not None:
        return status, exc.code  # type: ignore[attr-defined]
    for base, st, code in _BY_BASE:
        if isinstance(exc, base):
            return st, code
    return 400, "bad_request"


__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvitationRefused",
    "RateLimited",
    "RegistrationClosed",
    "Replay",
    "StaleHeartbeat",
    "Unauthenticated",
    "UnknownCase",
    "no_case",
    "status_of",
]


class ClockAlarm(PolicyError):
    """This node's clock is ahead of most of its reachable peers: a release is refused until
    it is fixed (docs/protocol.md §7.1). Never an API answer; the sweep logs it."""

    status = 409
    code = "clock_alarm"
