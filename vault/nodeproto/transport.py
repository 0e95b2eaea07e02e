"""Bounded HTTP for every outbound call: a wall-clock deadline, a size cap, an optional proxy.

Implements docs/protocol.md §4.9 (outbound calls: deadlines, size caps, proxies, onions).

httpx timeouts bound each network operation (connect, one read, one write), not a whole answer:
a peer that drips one byte a second never trips a 5 s read timeout and keeps its caller forever
(docs/threat-model.md, "Slow peers"). Here every call runs under a *deadline*, a point in
`time.monotonic()` time, held per thread:

- `deadline(seconds)` opens a scope; nested scopes keep the earliest deadline, so a fan-out can
  bound a task of several requests and each request still has its own bound;
- the network backend below gives every connect, TLS handshake, read and write at most the time
  left, so a stalled or dripping socket is cut AT the deadline, not one read timeout after it;
- `fetch` streams the answer and stops as soon as it exceeds `max_bytes` (a Content-Length
  over the cap is refused before the body is read).

A blocked call therefore holds its thread for at most its deadline: threads cannot pile up on
a hostile socket.

Proxies: `socks5h://host:port` (or `socks5://`, which Velador treats the same way) sends every
connection through a SOCKS5 proxy such as Tor. Host names are always handed to the proxy
(httpcore puts a domain name in the SOCKS CONNECT request), so no local DNS lookup names the
node. Hosts ending in `.onion` are only ever contacted through a proxy: without one, `route`
refuses them. The generic HTTP(S)_PROXY / ALL_PROXY variables are ignored (`trust_env=False`):
the one setting that applies is the one the user gave Velador.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpcore
import httpx

DEFAULT_MAX_ANSWER = 32 * 1024 * 1024
"""Largest answer body accepted from a node (a release with many envelopes stays far below)."""

PROXY_SCHEMES = ("socks5h", "socks5")
ONION_SUFFIX = ".onion"

_local = threading.local()


class TransportError(Exception):
    """An outbound call failed: unreachable, too slow, or too large. The text names no URL."""


class DeadlineExceeded(TransportError):
    """The whole call took longer than its deadline."""


class AnswerTooLarge(TransportError):
    """The answer body exceeded the size cap."""


class Unreachable(TransportError):
    """No connection (refused, reset, DNS or proxy failure)."""


class ProxyRequired(TransportError):
    """An onion address and no proxy: refused rather than tried directly."""


# --- deadlines -----------------------------------------------------------------------------------


def current_deadline() -> float | None:
    """The monotonic time at which the calls of this thread must stop (None: no bound)."""
    return getattr(_local, "deadline", None)


def remaining() -> float | None:
    d = current_deadline()
    return None if d is None else d - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[float | None]:
    """Bound every call of this thread inside the block by `seconds` from now (or less, if an
    enclosing scope ends sooner)."""
    old = current_deadline()
    new = old
    if seconds is not None:
        mine = time.monotonic() + max(0.0, seconds)
        new = mine if old is None else min(old, mine)
    _local.deadline = new
    try:
        yield new
    finally:
        _local.deadline = old


def _clamp(timeout: float | None, what: str) -> float | None:
    left = remaining()
    if left is None:
        return timeout
    if left <= 0:
        exc = httpcore.ConnectTimeout if what == "connect" else httpcore.ReadTimeout
        raise exc("deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, "read"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, "write"))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, "connect"))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _clamp(timeout, "connect"), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _clamp(timeout, "connect"), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        left = remaining()
        self._inner.sleep(seconds if left is None else max(0.0, min(seconds, left)))


_ssl_lock = threading.Lock()
_ssl: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One verifying context per process (loading the CA bundle costs milliseconds)."""
    global _ssl
    with _ssl_lock:
        if _ssl is None:
            _ssl = httpx.create_ssl_context(trust_env=False)
        return _ssl


class BoundedTransport(httpx.HTTPTransport):
    """httpx's transport with the deadline backend, direct or through a SOCKS5 proxy."""

    def __init__(self, proxy: str | None = None) -> None:
        # HTTPTransport.__init__ only builds the pool, which is built here instead (httpx does
        # not let a caller choose the network backend).
        backend = _DeadlineBackend()
        ssl_context = _ssl_context()
        limits = {"max_connections": 100, "max_keepalive_connections": 20, "keepalive_expiry": 5.0}
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=ssl_context, network_backend=backend, **limits
            )
        else:
            url = httpx.URL(proxy)
            self._pool = httpcore.SOCKSProxy(
                # httpcore speaks SOCKS5 with the host NAME in the request for either scheme.
                proxy_url=httpcore.URL(
                    scheme=b"socks5", host=url.raw_host, port=url.port, target=b"/"
                ),
                proxy_auth=(url.username.encode(), url.password.encode()) if url.username else None,
                ssl_context=ssl_context,
                network_backend=backend,
                **limits,
            )


# --- proxies and onion addresses -----------------------------------------------------------------


def check_proxy(proxy: str | None) -> str | None:
    """The proxy URL normalised, or ValueError with a sentence saying what is wrong with it."""
    if proxy is None or not proxy.strip():
        return None
    proxy = proxy.strip()
    try:
        url = httpx.URL(proxy)
    except httpx.InvalidURL as exc:
        raise ValueError("the proxy is not a URL") from exc
    if url.scheme not in PROXY_SCHEMES:
        raise ValueError("the proxy must be a SOCKS5 URL such as socks5h://127.0.0.1:9050 (Tor)")
    if not url.host or url.port is None:
        raise ValueError("the proxy URL must name a host and a port, e.g. socks5h://127.0.0.1:9050")
    userinfo = url.userinfo.decode()  # Tor isolates circuits by SOCKS user name: keep it
    return f"socks5h://{userinfo + '@' if userinfo else ''}{url.netloc.decode()}"


def host_of(url: str) -> str:
    try:
        return (httpx.URL(url).host or "").rstrip(".").lower()
    except (httpx.InvalidURL, ValueError):  # UnicodeError (bad IDNA) is a ValueError
        return ""


def is_onion(url: str) -> bool:
    return host_of(url).endswith(ONION_SUFFIX)


def route(url: str, proxy: str | None) -> None:
    """Refuse an onion URL when there is no proxy: it would leak a DNS query, then fail."""
    if proxy is None and is_onion(url):
        raise ProxyRequired(f"{host_of(url)} is an onion address and no Tor proxy is set")


def safe_url(url: str) -> str:
    """Scheme and host (and port) only: paths and queries of webhooks often carry tokens."""
    try:
        u = httpx.URL(url)
        port = f":{u.port}" if u.port else ""
        return f"{u.scheme}://{u.host}{port}"
    except (httpx.InvalidURL, ValueError):  # UnicodeError (bad IDNA) is a ValueError
        return "<invalid URL>"


def make_http(proxy: str | None = None, timeout: float = 10.0) -> httpx.Client:
    """A client whose calls obey `deadline` scopes; `timeout` bounds each single operation."""
    return httpx.Client(
        transport=BoundedTransport(check_proxy(proxy)),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


# --- one bounded exchange ------------------------------------------------------------------------


def fetch(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_ANSWER,
) -> tuple[int, bytes]:
    """Send one request and read the whole answer within `timeout` seconds and `max_bytes`.

    Returns (status, body). Raises DeadlineExceeded, AnswerTooLarge or Unreachable; their text
    never contains the URL. The answer is read raw (`Accept-Encoding: identity`): a compressed
    body cannot expand past the cap unseen."""
    hdrs = dict(headers or {})
    hdrs.setdefault("Accept-Encoding", "identity")
    with deadline(timeout):
        try:
            with http.stream(method, url, content=content, headers=hdrs) as resp:
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise AnswerTooLarge(f"the answer is larger than {max_bytes} bytes")
                if resp.is_stream_consumed:  # an in-memory answer (httpx.MockTransport)
                    body = bytearray(resp.content)
                else:
                    body = bytearray()
                    for chunk in resp.iter_raw():
                        body += chunk
                        if len(body) > max_bytes:
                            break
                        left = remaining()
                        if left is not None and left <= 0:
                            raise DeadlineExceeded(f"no complete answer within {timeout:g} s")
                if len(body) > max_bytes:
                    raise AnswerTooLarge(f"the answer is larger than {max_bytes} bytes")
                return resp.status_code, bytes(body)
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"no complete answer within {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise Unreachable(f"unreachable ({type(exc).__name__})") from exc
        except OSError as exc:  # socksio / socket errors httpcore does not map
            raise Unreachable(f"unreachable ({type(exc).__name__})") from exc
        except ValueError as exc:
            # A URL httpx accepts but cannot connect to, e.g. a host name that is not valid
            # IDNA (UnicodeError): a hostile node card must cost a refusal, never an exception
            # that stops a release (issue 11, finding 1).
            raise Unreachable(
                f"unreachable: the address is not usable ({type(exc).__name__})"
            ) from exc


# --- the process-wide default proxy of a client program ------------------------------------------

_default_proxy: str | None = None


def set_default_proxy(proxy: str | None) -> None:
    """Set by the CLI once per command (--proxy, VELADOR_PROXY, the home's config.toml)."""
    global _default_proxy
    _default_proxy = check_proxy(proxy)


def default_proxy() -> str | None:
    return _default_proxy
