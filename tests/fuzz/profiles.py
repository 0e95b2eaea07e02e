"""Hypothesis settings for tests/fuzz.

Two profiles, chosen by the environment so that one test body serves both runs:

- "fuzz-ci" (default, inside `make test`): few examples, derandomized (the same inputs on every
  run, so CI is reproducible), a per-example deadline so a slow parser fails loudly;
- "fuzz" (`VELADOR_FUZZ=1`, what `make fuzz` sets): many examples, random, and the example
  database kept so that a failure found once is replayed first next time.

The profiles are applied per test with `@FUZZ` and `@fuzz_settings(n)`, never loaded globally, so
they do not change the settings of tests outside tests/fuzz when pytest runs everything at once.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

FUZZING = os.environ.get("VELADOR_FUZZ") == "1"
FUZZ_EXAMPLES = int(os.environ.get("VELADOR_FUZZ_EXAMPLES", "1000"))
"""Examples per test under `make fuzz` (weight 1; heavier tests scale down, see fuzz_settings)."""

_SUPPRESS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.function_scoped_fixture,
]

settings.register_profile(
    "fuzz-ci",
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=_SUPPRESS,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    derandomize=False,
    deadline=timedelta(seconds=20),
    suppress_health_check=_SUPPRESS,
    print_blob=True,
)
PROFILE = settings.get_profile("fuzz" if FUZZING else "fuzz-ci")


def fuzz_settings(ci_examples: int = 40, fuzz_fraction: float = 1.0) -> settings:
    """The active profile with `ci_examples` in `make test`, or a fraction of FUZZ_EXAMPLES."""
    n = max(10, int(FUZZ_EXAMPLES * fuzz_fraction)) if FUZZING else ci_examples
    return settings(PROFILE, max_examples=n)


FUZZ = fuzz_settings()
