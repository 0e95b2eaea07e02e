"""What the running agent holds in memory (docs/threat-model.md §5.1): the key, or nothing.

`KeyHolder` is the only place the unlocked identity lives in `velador agent`; locking drops it.
`harden_process` runs before the key is in memory: no core file, and on Linux not dumpable, so
other processes of the same user can neither ptrace the agent nor read /proc/PID/mem.
"""

from __future__ import annotations

import contextlib

from vault.identity import Identity


def harden_process() -> None:
    """No core file and, on Linux, not dumpable: other processes of the same user can neither
    ptrace the agent nor read /proc/PID/mem, where an unlocked key lives."""
    import resource

    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_dumpable = 4
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)


class KeyHolder:
    """The unlocked identity, or nothing. Only the main thread reads or changes it."""

    def __init__(self) -> None:
        self.identity: Identity | None = None
        self.active = 0
        """Clock time of the last sign of the reporter (unlock, change in a watched folder)."""

    @property
    def locked(self) -> bool:
        return self.identity is None

    def unlock(self, identity: Identity, now: int) -> None:
        self.identity, self.active = identity, now

    def lock(self) -> bool:
        """Drop the key; True if it was held. (Python cannot promise the bytes are wiped; the
        threat model says so.)"""
        was = self.identity is not None
        self.identity = None
        return was
