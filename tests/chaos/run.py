"""`python -m tests.chaos.run --cycles N --seed S`: a chaos session from the command line.

Prints the seed first, the counts at the end, and on a violation the seed and the command that
replays it; exits 1 on a violation. See tests/chaos/harness.py for what is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

os.environ.setdefault("VELADOR_INSECURE_FAST_KDF", "1")  # test identities: fast Argon2id


def main(argv: list[str] | None = None) -> int:
    from tests.chaos.harness import ChaosFailure, Settings, run_chaos

    ap = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    ap.add_argument("--cycles", type=int, default=200, help="fault cycles (default 200)")
    ap.add_argument("--seed", type=int, default=None, help="replay this seed (default: random)")
    ap.add_argument("--tick", type=float, default=0.3, help="node sweep tick in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"chaos: seed {seed}", flush=True)
    try:
        summary = run_chaos(
            Settings(seed=seed, cycles=args.cycles, tick=args.tick),
            say=lambda m: print(m, flush=True),
            keep=args.keep,
        )
    except ChaosFailure as exc:
        print(str(exc), file=sys.stderr, flush=True)
        print(f"chaos: seed {seed} FAILED", flush=True)
        return 1
    print(json.dumps(summary, indent=1))
    print(
        f"chaos: seed {seed} ok: {summary['fault_cycles']} fault cycles in {summary['seconds']} s, "
        f"{summary['invariant_checks_total']} invariant checks passed",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
