"""The one exception tree of Velador (docs/format.md §1.4).

    VeladorError                 root: anything a user can cause or fix
    ├── FormatError              bytes that do not parse as the structure they claim to be
    │   └── UnsafePathError      a manifest path that would escape the output folder
    ├── AuthenticationError      a wrong passphrase, a bad signature, a failed decryption
    ├── ShareError               shares that are missing, corrupt, forged or do not combine
    ├── StoreError               an object store that is unreachable, refuses, or lacks an object
    ├── NodeError                an escrow node that is unreachable or answers with an error
    ├── PolicyError              a request the case policy or the case state does not allow
    └── NotFoundError            a named thing (case, contact, snapshot, identity) does not exist

Each error carries a one-line message (what failed and why) and an optional hint (what to do).
Messages never contain secrets: no passphrase, key, mnemonic or file content is ever formatted
into one. `ValueError`/`TypeError` are kept for programmer mistakes.

Languages. The library stays in English (logs, --json, other programs); a message is translated
where it is shown (cli/i18n.py). For that, a message is a whole sentence with named
placeholders, marked with `N_` so the catalog tools find it, and its values are passed apart:

    raise NodeError(N_("node %(node)s did not answer in %(seconds)d s"), node=name, seconds=10)

`message` and `hint` are the English texts with the values filled in; `template`,
`hint_template` and `params` let the CLI look the sentence up and fill in the same values.
Messages written as plain (f-)strings still work; they are shown untranslated.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:  # the name gettext tools look for
    """Mark a message for translation without translating it (the CLI translates on display)."""
    return message


def _fill(template: str, params: dict[str, Any]) -> str:
    return template % params if params else template


class VeladorError(Exception):
    """Something went wrong that the user can understand and usually fix."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, **params: Any) -> None:
        self.template = message
        self.hint_template = hint
        self.params = params
        self.message = _fill(message, params)
        self.hint = _fill(hint, params) if hint is not None else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Errors cross process boundaries (deposit workers); keep the hint and the values.
        return (_rebuild, (type(self), self.template, self.hint_template, self.params))


def _rebuild(
    cls: type[VeladorError],
    message: str,
    hint: str | None,
    params: dict[str, Any] | None = None,
) -> VeladorError:
    return cls(message, hint=hint, **(params or {}))


class Note(str):
    """An English sentence that keeps its template (marked with N_) and its values.

    A value may be a Note, or a list of Notes (joined with "; "); cli/i18n.note_text says the
    whole in the reader's language, and everything else sees the English string. A Note given
    as a value of an error (an outcome word, a list of other errors) is translated with the
    error (cli/i18n.error_text), so no English value lands inside a Spanish sentence. (It was
    born in vault/custody.py, which still exports it.)"""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Note:
        flat = {k: "; ".join(map(str, v)) if isinstance(v, list) else v for k, v in params.items()}
        note = super().__new__(cls, template % flat if params else template)
        note.template = template
        note.params = params
        return note

    @classmethod
    def of(cls, exc: VeladorError | None) -> Note:
        """An error's message as a Note (its own template and values)."""
        if exc is None:
            return cls("?")
        return cls(exc.template, **exc.params)


class FormatError(VeladorError):
    """Data does not parse as the Velador structure it claims to be."""

    exit_code = 65  # EX_DATAERR


class UnsafePathError(FormatError):
    """A path in a manifest would write outside the output folder or onto something unsafe."""


class AuthenticationError(VeladorError):
    """A passphrase, signature or authenticated ciphertext did not verify."""

    exit_code = 77  # EX_NOPERM


class ShareError(VeladorError):
    """Not enough valid shares, or shares that do not combine into the case secret."""

    exit_code = 66  # EX_NOINPUT


class StoreError(VeladorError):
    """An object store failed or does not hold an object it should."""

    exit_code = 74  # EX_IOERR


class NodeError(VeladorError):
    """An escrow node could not be reached or refused a request."""

    exit_code = 69  # EX_UNAVAILABLE


class PolicyError(VeladorError):
    """The request is not allowed by the case policy or by the current state."""

    exit_code = 75


class NotFoundError(VeladorError):
    """A case, contact, snapshot or identity that was named does not exist."""

    exit_code = 66


__all__ = [
    "N_",
    "AuthenticationError",
    "FormatError",
    "NodeError",
    "NotFoundError",
    "PolicyError",
    "ShareError",
    "StoreError",
    "UnsafePathError",
    "VeladorError",
]
