"""Object stores: where ciphertext objects live (docs/format.md §7 Stores).

``open_store(url)`` turns a store URL into a ``Store``:

- ``file:///abs/path``, or a plain folder path: objects as files (vault.stores.local);
- ``s3://bucket/prefix?endpoint=...&region=...``: an S3-compatible bucket (vault.stores.s3).

``describe(url)`` is the form of a URL that may appear in logs and error messages.

S3 and proxies (docs/protocol.md §4.9): boto3 cannot send its connections through a SOCKS
proxy. When the command runs with a proxy (--proxy, VELADOR_PROXY), an ``s3://`` store is
refused rather than contacted directly, behind the user's back; ``VELADOR_S3_DIRECT=1`` accepts
direct S3 connections explicitly.
"""

from __future__ import annotations

import os
import re

from vault.errors import N_, StoreError

from .base import Store, describe, validate_key, validate_prefix
from .local import FileStore, parse_file_url

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
STORE_URL_HINT = N_("use file:///path or s3://bucket/prefix")
S3_DIRECT_ENV = "VELADOR_S3_DIRECT"


def _refuse_s3_around_proxy(url: str) -> None:
    import sys

    transport = sys.modules.get("vault.nodeproto.transport")
    if transport is None or transport.default_proxy() is None:
        return
    if os.environ.get(S3_DIRECT_ENV) == "1":
        return
    raise StoreError(
        N_(
            "the S3 store %(store)s cannot be reached through the SOCKS proxy (boto3 has no "
            "SOCKS support), and Velador does not connect around a proxy you set"
        ),
        hint=N_(
            "set %(variable)s=1 to let S3 connections go direct (the store's operator and "
            "the network then see your address), or run this command without the proxy"
        ),
        store=describe(url),
        variable=S3_DIRECT_ENV,
    )


def open_store(url: str, *, s3_endpoint: str | None = None) -> Store:
    """The store ``url`` names. Cheap: nothing is contacted or created until the first call.

    ``s3_endpoint`` overrides the endpoint of an ``s3://`` URL and is ignored for other stores.
    """
    url = url.strip()
    if not url:
        raise StoreError(N_("empty store URL"), hint=STORE_URL_HINT)
    if "://" not in url and not _SCHEME.match(url):
        return FileStore(url)  # a plain path; './x:y' reaches a folder whose name has a colon
    scheme = url.split(":", 1)[0].lower()
    if scheme == "file":
        return FileStore(parse_file_url(url))
    if scheme == "s3":
        _refuse_s3_around_proxy(url)
        from .s3 import S3Store  # boto3 is slow to import; only s3 users pay for it

        return S3Store(url, endpoint=s3_endpoint)
    raise StoreError(
        N_("unsupported store URL %(store)s"), hint=STORE_URL_HINT, store=describe(url)
    )


__all__ = ["FileStore", "Store", "describe", "open_store", "validate_key", "validate_prefix"]
