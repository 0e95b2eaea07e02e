"""Velador core library: identities, cards, policies, shares, envelopes, objects, stores, recovery.

Each module names the section of docs/format.md it implements.
"""

from .errors import (
    AuthenticationError,
    FormatError,
    NodeError,
    NotFoundError,
    PolicyError,
    ShareError,
    StoreError,
    UnsafePathError,
    VeladorError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "FormatError",
    "NodeError",
    "NotFoundError",
    "PolicyError",
    "ShareError",
    "StoreError",
    "UnsafePathError",
    "VeladorError",
    "__version__",
]
