"""SLIP-39 combination under hostile share lists: bounded time and memory (docs/format.md §5.1).

`combine_any` promises at most 5000 attempts. Anyone can make mnemonics with a valid checksum and
any header (the RS1024 checksum is public), so a list of them must not cost more than that
promise, whatever their thresholds. The check runs in a child process with an address-space
limit and a timeout, so a failure cannot take memory from the rest of the machine.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (256 * 1024 * 1024, 256 * 1024 * 1024))
    from shamir_mnemonic.share import Share
    from vault.errors import ShareError
    from vault.shares import combine_any

    n, k = int(sys.argv[1]), int(sys.argv[2])
    forged = [
        Share(i, True, 1, 0, 1, 1, i % 16, k, bytes([i]) * 32).mnemonic() for i in range(n)
    ]
    try:
        combine_any(forged, "age1" + "q" * 58)
    except ShareError as exc:
        print("ShareError", exc.message)
        sys.exit(0)
    except MemoryError:
        print("MemoryError")
        sys.exit(3)
    print("no error")
    sys.exit(4)
    """
)


def run_child(n: int, k: int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(k)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"combine_any on {n} forged shares (threshold {k}) ran over {timeout} s")


def test_few_forged_shares_are_refused_quickly():
    res = run_child(12, 3)
    assert res.returncode == 0 and res.stdout.startswith("ShareError"), res.stdout + res.stderr


def test_many_forged_shares_stay_within_the_attempt_limit():
    res = run_child(40, 8)
    assert res.returncode == 0 and res.stdout.startswith("ShareError"), res.stdout + res.stderr
