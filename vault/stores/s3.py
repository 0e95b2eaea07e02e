"""The ``s3://`` store: objects in an S3-compatible bucket through boto3 (docs/format.md §7 Stores).

URL: ``s3://bucket/optional/prefix?endpoint=http://host:port&region=xx``. The endpoint serves
S3-compatible servers (MinIO, Ceph RGW, Garage, B2, moto); it comes from the ``endpoint`` argument,
else the URL, else boto3's own configuration (``AWS_ENDPOINT_URL``...). Credentials and region come
the usual boto3 way (environment, ~/.aws, instance roles) and never from the URL: a URL with
``user:pass@`` is refused so a secret never lands in a policy, a log or an error message.

S3 gives the guarantees the interface asks for: a PUT is atomic and durable once acknowledged,
DELETE of a missing key succeeds, listings are sorted bytewise. Files above 8 MiB go multipart.

The store is cheap to make (the boto3 client is built on first use) and safe to share between
threads: one boto3 session and client per store, built under a lock, since sessions are not
thread-safe while clients are.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import boto3.exceptions
import botocore.exceptions as bce
import botocore.handlers
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from vault.errors import N_, NotFoundError, StoreError, VeladorError

from . import handoff
from .base import describe, validate_key, validate_prefix
from .gate import SMALL_OBJECT, Turn, upload_turn
from .ratelimit import throttle

MIB = 1 << 20
MULTIPART_SIZE = 8 * MIB
"""Files above this size upload (and download) in parts of this size."""

CREDENTIALS_HINT = N_(
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if temporary), "
    "or AWS_PROFILE with ~/.aws/credentials"
)
_AUTH_CODES = frozenset(("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"))
_AUTH_CODES |= {"ExpiredToken", "InvalidToken", "TokenRefreshRequired", "InvalidClientTokenId"}
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _clean_endpoint(endpoint: str, store: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StoreError(
            N_("the S3 endpoint of store %(store)s must be an http:// or https:// URL"),
            hint=N_("for example s3://bucket/prefix?endpoint=http://127.0.0.1:9000"),
            store=store,
        )
    if "@" in parts.netloc:
        raise StoreError(
            N_("the S3 endpoint of store %(store)s must not contain credentials"),
            hint=CREDENTIALS_HINT,
            store=store,
        )
    return endpoint


def map_s3_error(
    exc: BaseException, *, store: str, bucket: str, endpoint: str, key: str | None = None
) -> VeladorError:
    """One clear ``StoreError`` (or ``NotFoundError``) for a boto3/botocore failure.

    Server messages are never copied: some echo request details. Only the error code is shown.
    """
    # boto3 wraps some failures; look at the underlying botocore error.
    if isinstance(exc, boto3.exceptions.RetriesExceededError):
        exc = exc.last_exception
    elif isinstance(exc, boto3.exceptions.S3UploadFailedError) and exc.__context__ is not None:
        exc = exc.__context__
    if isinstance(exc, bce.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return StoreError(
                N_("bucket %(bucket)s does not exist (store %(store)s)"),
                hint=N_("create the bucket, or fix the bucket name or endpoint in the store URL"),
                bucket=bucket,
                store=store,
            )
        if code in _NOT_FOUND_CODES:
            return NotFoundError(N_("store %(store)s has no object %(key)s"), store=store, key=key)
        if code in _AUTH_CODES or status in (401, 403):
            return StoreError(
                N_("the S3 store refused the credentials (%(answer)s) for store %(store)s"),
                hint=CREDENTIALS_HINT,
                answer=code or status,
                store=store,
            )
        return StoreError(
            N_("the S3 store %(store)s answered %(answer)s for %(target)s"),
            store=store,
            answer=code or status,
            target=key or bucket,
        )
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return StoreError(
            N_("no S3 credentials found for store %(store)s"), hint=CREDENTIALS_HINT, store=store
        )
    if isinstance(exc, (bce.ProfileNotFound, bce.CredentialRetrievalError)):
        return StoreError(
            N_("cannot load the S3 credentials for store %(store)s"),
            hint=CREDENTIALS_HINT,
            store=store,
        )
    if isinstance(exc, (bce.ConnectionError, bce.HTTPClientError)):
        timed_out = isinstance(exc, (bce.ConnectTimeoutError, bce.ReadTimeoutError))
        return StoreError(
            N_("cannot reach the S3 endpoint %(endpoint)s (timed out) for store %(store)s")
            if timed_out
            else N_(
                "cannot reach the S3 endpoint %(endpoint)s (connection failed) for store %(store)s"
            ),
            hint=N_(
                "check the endpoint in the store URL, the network and that the server is running"
            ),
            endpoint=endpoint,
            store=store,
        )
    return StoreError(
        N_("S3 request for store %(store)s failed: %(kind)s"), store=store, kind=type(exc).__name__
    )


_CAUGHT = (bce.BotoCoreError, bce.ClientError, boto3.exceptions.Boto3Error)
_REBUILD_ARGS = ("url", "endpoint", "max_attempts", "connect_timeout", "read_timeout", "page_size")


def _parse_url(url: str, shown: str) -> tuple[str, str, dict[str, str]]:
    """(bucket, key prefix ending in '/' or empty, options) of an s3:// URL; ``shown`` is safe."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"not an s3:// URL: {shown}")
    if "@" in parts.netloc:
        raise StoreError(
            N_("store URL %(shown)s must not contain credentials"),
            hint=N_(
                "remove user:password@ from the URL; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if temporary), or AWS_PROFILE with "
                "~/.aws/credentials"
            ),
            shown=shown,
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}", parts.netloc):
        # Lenient on purpose: Ceph and older MinIO allow uppercase and '_' in bucket names.
        raise StoreError(
            N_("store URL %(shown)s names no valid bucket"),
            hint=N_("use s3://bucket/prefix"),
            shown=shown,
        )
    prefix = unquote(parts.path).strip("/")
    if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
        raise StoreError(
            N_("store URL %(shown)s has a malformed prefix"),
            hint=N_("use s3://bucket/a/b"),
            shown=shown,
        )
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in ("endpoint", "region"):
            raise StoreError(
                N_("unknown option %(name)r in store URL %(shown)s"),
                hint=N_(
                    "an s3:// URL takes only endpoint= and region=; credentials come from the "
                    "environment"
                ),
                name=name,
                shown=shown,
            )
        options[name] = value
    return parts.netloc, prefix + "/" if prefix else "", options


class S3Store:
    """Objects in ``s3://bucket/prefix`` (see the module docstring).

    ``check_by_listing``: a deposit learns which objects this store holds from one listing
    (``list_sizes``, a request per 1,000 keys) rather than a HEAD per chunk (format.md §6.6).

    ``max_attempts``, the timeouts and ``page_size`` exist so tests (and impatient callers) can
    fail fast or paginate small; the defaults suit a flaky connection.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        max_attempts: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        page_size: int = 1000,
    ) -> None:
        self.url = describe(url)
        self.bucket, self._prefix, options = _parse_url(url, self.url)
        chosen = endpoint or options.get("endpoint") or None
        self._endpoint = _clean_endpoint(chosen, self.url) if chosen else None
        self._region = options.get("region") or None
        self._args = {k: v for k, v in locals().items() if k in _REBUILD_ARGS}  # for __reduce__
        # S3-compatible servers often reject botocore's newer default trailing checksums, so ask
        # for them only when required there (None keeps boto3's configuration). Objects are age
        # files, whose MACs catch corruption anyway.
        checksums = "when_required" if self._endpoint else None
        self._config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=32,  # callers upload from thread pools; 10 would thrash
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
        )
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_SIZE,
            multipart_chunksize=MULTIPART_SIZE,
            max_concurrency=4,  # per transfer; callers already run several transfers at once
            preferred_transfer_client="classic",  # the CRT client would ignore these settings
        )
        self.page_size = page_size
        self._lock = threading.Lock()
        self._client_obj: Any = None

    check_by_listing = True

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable for worker processes: rebuilt from the arguments, with a fresh client.
        return (_rebuild, (self._args,))

    # -- plumbing ------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                try:
                    session = _session()
                    client = session.client(
                        "s3",
                        endpoint_url=self._endpoint,
                        region_name=self._region,
                        config=self._config,
                    )
                    client.meta.events.register("before-send.s3.PutObject", _take_turn)
                    handoff.install(client)  # the turn goes on once the body is delivered
                    # No "Expect: 100-continue": it idles the link a round trip per object,
                    # to spare at most one object (4 MiB) sent to a server that refuses it.
                    expect = getattr(botocore.handlers, "add_expect_header", None)
                    if expect is not None:
                        client.meta.events.unregister("before-call.s3", expect)
                    self._client_obj = client
                except _CAUGHT as exc:
                    raise self._error(exc) from exc
                except ValueError as exc:  # botocore: "Invalid endpoint: ..."
                    raise StoreError(
                        N_("invalid S3 endpoint for store %(url)s"), url=self.url
                    ) from exc
            return self._client_obj

    def _endpoint_desc(self) -> str:
        if self._endpoint:
            return describe(self._endpoint)
        client = self._client_obj
        return describe(client.meta.endpoint_url) if client is not None else "(boto3 default)"

    def _error(self, exc: BaseException, key: str | None = None) -> VeladorError:
        return map_s3_error(
            exc, store=self.url, bucket=self.bucket, endpoint=self._endpoint_desc(), key=key
        )

    def _full(self, key: str) -> str:
        return self._prefix + validate_key(key)

    # -- Store ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        full = self._full(key)
        throttle(len(data))  # --limit-upload (vault/stores/ratelimit.py)
        # One upload at a time per store in a deposit (gate.py): the turn is taken by
        # _take_turn once the request is signed, just before it is sent, and each retry of it.
        # A small object goes without waiting for it (gate.SMALL_OBJECT: a round trip costs
        # more than sending it again). It goes on to the store's next upload once the server has
        # acknowledged the whole body (handoff.py), before the answer comes back.
        with upload_turn(self.url) as turn:
            gated = len(data) >= SMALL_OBJECT
            _sending.turn = turn if gated else None
            try:
                with handoff.after_body(_hand_on(turn, self._config.read_timeout)):
                    self._client().put_object(Bucket=self.bucket, Key=full, Body=data)
            except _CAUGHT as exc:
                raise self._error(exc, key) from exc
            finally:
                _sending.turn = None

    def sync(self) -> None:
        """Nothing to do: S3 acknowledges a PUT only once the object is stored durably."""

    def stage(self, key: str, data: bytes) -> str:
        """A plain PUT: S3 has no invisible, non-durable state worth using."""
        self.put(key, data)
        return ""

    def commit(self, staged: list[tuple[str, str]]) -> None:
        """Nothing to do: staged objects were PUT, durable and visible already."""

    def put_file(self, key: str, path: Path) -> None:
        full = self._full(key)
        size = Path(path).stat().st_size  # a missing source is the caller's bug, raised as is
        with upload_turn(self.url) as turn:
            turn.take()  # the parts go from s3transfer's threads: the turn covers them all
            throttle(size)  # --limit-upload (vault/stores/ratelimit.py)
            try:
                self._client().upload_file(str(path), self.bucket, full, Config=self._transfer)
            except _CAUGHT as exc:
                raise self._error(exc, key) from exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        full = self._full(key)
        try:
            resp = self._client().get_object(Bucket=self.bucket, Key=full)
            with resp["Body"] as body:
                if max_bytes is not None and int(resp.get("ContentLength") or 0) > max_bytes:
                    raise StoreError(
                        N_("object %(key)s in store %(url)s is larger than %(max_bytes)s bytes"),
                        key=key,
                        url=self.url,
                        max_bytes=max_bytes,
                    )
                data: bytes = body.read()
            return data
        except _CAUGHT as exc:
            raise self._error(exc, key) from exc

    def get_to_file(self, key: str, path: Path) -> None:
        full = self._full(key)
        try:
            # s3transfer writes to a temp name beside `path` and renames: whole or nothing.
            self._client().download_file(self.bucket, full, str(path), Config=self._transfer)
        except _CAUGHT as exc:
            raise self._error(exc, key) from exc

    def has(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        full = self._full(key)
        try:
            resp = self._client().head_object(Bucket=self.bucket, Key=full)
        except _CAUGHT as exc:
            err = self._error(exc, key)
            # HEAD has no body, so a missing bucket also looks like a missing object here.
            if isinstance(err, NotFoundError):
                return None
            raise err from exc
        return int(resp["ContentLength"])

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        return (key for key, _ in self._list(self._prefix + prefix))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``list`` with each object's size, from the same ListObjectsV2 pages (no HEAD)."""
        validate_prefix(prefix)
        return self._list(self._prefix + prefix)

    def _list(self, full_prefix: str) -> Iterator[tuple[str, int]]:
        strip = len(self._prefix)
        try:
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(
                    Bucket=self.bucket,
                    Prefix=full_prefix,
                    PaginationConfig={"PageSize": self.page_size},
                )
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][strip:]
                    try:
                        validate_key(key)
                    except ValueError:
                        continue  # "folder" markers and foreign objects are not our keys
                    yield key, int(obj.get("Size") or 0)
        except _CAUGHT as exc:
            raise self._error(exc) from exc

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client().delete_object(Bucket=self.bucket, Key=full)
        except _CAUGHT as exc:
            raise self._error(exc, key) from exc


_loader_lock = threading.Lock()
_loader: Any = None


def _session() -> boto3.session.Session:
    """A new boto3 session (credentials and configuration are read anew, as before) whose
    botocore data loader is shared by the whole process. Each loader parses the S3 service
    model, about 0.1 s of JSON and 94,000 dicts; a deposit made four clients (listing, one per
    worker thread, the snapshot), two of them at once on the way to the first upload, and the
    interpreter spent 0.25 s collecting the copies at exit. Shared, the model is parsed once
    and every later client takes about 20 ms. The models are read-only data; the loader caches
    them per name."""
    global _loader
    core = botocore.session.get_session()
    with _loader_lock:
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
        session = boto3.session.Session(botocore_session=core)
        paths = _loader.search_paths  # boto3 appends its data folder once per session
        paths[:] = list(dict.fromkeys(paths))
    return session


_sending = threading.local()
"""``turn``: the upload turn (gate.py) of the PUT this thread is making, if any."""


def _take_turn(**_: Any) -> None:
    """botocore's before-send hook: wait for the store's upload turn (None: send the request)."""
    turn = getattr(_sending, "turn", None)
    if turn is not None:
        turn.take()


def _hand_on(turn: Turn, timeout: float) -> Callable[[Any], None]:
    """What a PUT does once its body is written: release its turn, if it holds one, as soon as
    the server has acknowledged every byte (format.md §7.2)."""

    def after_body(sock: Any) -> None:
        if turn.held and handoff.wait_delivered(sock, timeout):
            turn.release()

    return after_body


def _rebuild(args: dict[str, Any]) -> S3Store:
    return S3Store(**args)
