"""Object stores: where ciphertext objects live (docs/format.md §7 Stores).

``open_store(url)`` turns a store URL into a ``Store``:

- ``file:///abs/path``, or a plain folder path: objects as files (vault.stores.local);
- ``s3://bucket/prefix?endpoint=...&region=...``: an S3-compatible bucket (vault.stores.s3).

``describe(url)`` is the form of a URL that may appear in logs and error messages.
"""

from __future__ import annotations

import re

from vault.errors import StoreError

from .base import Store, describe, validate_key, validate_prefix
from .local import FileStore, parse_file_url

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
STORE_URL_HINT = "use file:///path or s3://bucket/prefix"


def open_store(url: str, *, s3_endpoint: str | None = None) -> Store:
    """The store ``url`` names. Cheap: nothing is contacted or created until the first call.

    ``s3_endpoint`` overrides the endpoint of an ``s3://`` URL and is ignored for other stores.
    """
    url = url.strip()
    if not url:
        raise StoreError("empty store URL", hint=STORE_URL_HINT)
    if "://" not in url and not _SCHEME.match(url):
        return FileStore(url)  # a plain path; './x:y' reaches a folder whose name has a colon
    scheme = url.split(":", 1)[0].lower()
    if scheme == "file":
        return FileStore(parse_file_url(url))
    if scheme == "s3":
        from .s3 import S3Store  # boto3 is slow to import; only s3 users pay for it

        return S3Store(url, endpoint=s3_endpoint)
    raise StoreError(f"unsupported store URL {describe(url)}", hint=STORE_URL_HINT)


__all__ = ["FileStore", "Store", "describe", "open_store", "validate_key", "validate_prefix"]
