"""A fault-injecting TCP proxy: one listening port per directed link (party -> node).

Every party reaches a node only through its own link: the reporter and the two recipients
through `reporter->node-2` and so on, and node A's peer traffic to node B (gossip pushes and the
pre-release pull) through `node-a->node-b`, set in A's `[peers] urls`. The harness sets each
link's mode between steps; the mode is read once per TCP connection, and the chaos clients open
one connection per request (no keep-alive), so a decision is a decision about one request.

Modes (`clean` ones are those through which a request is certain to arrive in time):

    up      pass                                                          clean
    slow    hold SHORT_HOLD seconds, then pass                            clean
    flaky   per connection, seeded: pass | refuse | cut | long hold
    down    refuse every connection (a partition)

Hostile modes (issue 11, adversarial chaos): the "peer" behind the link lies about being a node.
The request never reaches the real node; the proxy answers in its place:

    drip     a 200 head with a large Content-Length, then one body byte a second, forever
    stall    read the request and never answer
    huge     a 200 answer whose body never ends (64 KiB writes as fast as the reader takes them)
    garbage  a prompt, complete answer that is not what the protocol allows (seeded: junk
             bytes, JSON of the wrong shape, a 200 with a signature that does not verify)

None of them is clean: a node must give up on such a peer within its own wall-clock deadline,
and never let it delay a release (docs/protocol.md, client limits).

    refuse     close the client connection at once; the node never sees the request
    cut        forward the request, let the node answer, and close the client connection
               instead of relaying the answer: the request took effect, the sender cannot know
    long hold  hold LONG_HOLD seconds (longer than every client's timeout), then forward
               anyway: the request arrives late, after its sender gave up

A change of mode aborts the link's open connections, like a real partition does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import re
import threading
from dataclasses import dataclass, field

MODES = ("up", "slow", "flaky", "down", "drip", "stall", "huge", "garbage")
CLEAN = ("up", "slow")
HOSTILE = ("drip", "stall", "huge", "garbage")
HOSTILE_LIMIT = 600.0
"""Seconds after which the proxy itself ends a hostile answer (so no task outlives a run)."""
GARBAGE = (
    b"\x00\xff not json at all \x13\x37",
    b'{"v": 1, "body": "a string where an object belongs"}',
    b"[1, 2, 3]",
    b'{"signed": {"alg": "ed25519", "sig": "AAAA", "key": "AAAA"}, "body": {"seq": 99}}',
    b"{" * 5000,
)
SHORT_HOLD = (0.02, 0.25)
"""A 'slow' link's hold, far below every client timeout."""


@dataclass
class Link:
    src: str
    dst: str
    upstream: int
    rng: random.Random
    long_hold: float
    mode: str = "up"
    port: int = 0
    server: asyncio.base_events.Server | None = None
    conns: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    def decide(self) -> str:
        if self.mode == "up":
            return "pass"
        if self.mode == "slow":
            return "short"
        if self.mode == "down":
            return "refuse"
        if self.mode in HOSTILE:
            return self.mode
        return self.rng.choices(["pass", "refuse", "cut", "long"], [4, 2, 2, 2])[0]


class Proxy:
    """All links, served by one asyncio loop in a daemon thread."""

    def __init__(self, seed: int, long_hold: float) -> None:
        self.seed = seed
        self.long_hold = long_hold
        self.links: dict[tuple[str, str], Link] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro_or_fn, *args):
        if asyncio.iscoroutinefunction(coro_or_fn):
            fut = asyncio.run_coroutine_threadsafe(coro_or_fn(*args), self.loop)
        else:

            async def wrap():
                return coro_or_fn(*args)

            fut = asyncio.run_coroutine_threadsafe(wrap(), self.loop)
        return fut.result(30)

    # --- set-up -------------------------------------------------------------------------------

    def add(self, src: str, dst: str, upstream: int) -> Link:
        # A string seed is hashed with SHA-512 by random.seed: stable across runs and platforms.
        link = Link(src, dst, upstream, random.Random(f"{self.seed}:{src}->{dst}"), self.long_hold)
        self._call(self._listen, link)
        self.links[(src, dst)] = link
        return link

    async def _listen(self, link: Link) -> None:
        link.server = await asyncio.start_server(
            lambda r, w: self._handle(link, r, w), "127.0.0.1", 0
        )
        link.port = link.server.sockets[0].getsockname()[1]

    def url(self, src: str, dst: str) -> str:
        return f"http://127.0.0.1:{self.links[(src, dst)].port}"

    def set_mode(self, src: str, dst: str, mode: str) -> bool:
        """Returns True if the mode changed."""
        assert mode in MODES, mode
        link = self.links[(src, dst)]
        if link.mode == mode:
            return False
        self._call(self._switch, link, mode)
        return True

    def _switch(self, link: Link, mode: str) -> None:
        link.mode = mode
        for w in list(link.conns):
            w.transport.abort()
        link.conns.clear()

    def mode(self, src: str, dst: str) -> str:
        return self.links[(src, dst)].mode

    def close(self) -> None:
        async def shutdown() -> None:
            for link in self.links.values():
                if link.server is not None:
                    link.server.close()
                for w in list(link.conns):
                    w.transport.abort()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        with contextlib.suppress(Exception):
            self.loop.close()

    # --- one connection ---------------------------------------------------------------------

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    async def _handle(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        action = link.decide()
        self._count(f"conn_{action}")
        if action == "refuse":
            writer.transport.abort()
            return
        link.conns.add(writer)
        up_w: asyncio.StreamWriter | None = None
        if action in HOSTILE:
            try:
                await asyncio.wait_for(self._hostile(link, action, reader, writer), HOSTILE_LIMIT)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                pass  # the node gave up on us, as it must
            except asyncio.CancelledError:
                pass
            finally:
                link.conns.discard(writer)
                writer.transport.abort()
            return
        try:
            if action == "short":
                await asyncio.sleep(link.rng.uniform(*SHORT_HOLD))
            elif action == "long":
                await asyncio.sleep(link.long_hold)
            try:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", link.upstream)
            except OSError:
                self._count("upstream_down")
                writer.transport.abort()
                return
            if action == "cut":
                await self._cut(reader, up_r, up_w, writer)
            else:
                await self._pipe_both(reader, writer, up_r, up_w)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.TimeoutError,
        ):
            self._count("broken")
        except asyncio.CancelledError:
            pass  # the proxy is shutting down
        finally:
            link.conns.discard(writer)
            if action == "cut":
                writer.transport.abort()
            else:
                writer.close()  # flushes the answer, then closes
            if up_w is not None:
                up_w.transport.abort()

    async def _hostile(
        self, link: Link, action: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer in the real node's place, as a lying or hostile peer would."""
        await reader.readuntil(b"\r\n\r\n")  # the request head; the body is never read
        if action == "stall":
            await asyncio.sleep(HOSTILE_LIMIT)
            return
        if action == "garbage":
            body = link.rng.choice(GARBAGE)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
            )
            await writer.drain()
            return
        if action == "drip":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: 1000000\r\n\r\n{"
            )
            while True:
                await writer.drain()
                await asyncio.sleep(1.0)
                writer.write(b" ")
        # huge: an answer without an end, as fast as the reader takes it
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n[")
        chunk = b"1," * 32768
        while True:
            writer.write(chunk)
            await writer.drain()
            self._count("huge_bytes_64k")

    @staticmethod
    async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            data = await src.read(65536)
            if not data:
                return
            dst.write(data)
            await dst.drain()

    @staticmethod
    async def _answer(u_r: asyncio.StreamReader) -> bytes:
        """One whole HTTP/1.1 answer from the node (the node always sends Content-Length)."""
        head = await u_r.readuntil(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        if match is None:
            return head + await u_r.read()
        return head + await u_r.readexactly(int(match.group(1)))

    async def _pipe_both(self, c_r, c_w, u_r, u_w) -> None:
        # One request per connection: the answer ends the exchange. The client's EOF is not
        # passed on, so a request that arrives after its sender gave up is still served.
        to_up = asyncio.ensure_future(self._copy(c_r, u_w))
        try:
            answer = await asyncio.wait_for(self._answer(u_r), timeout=60)
            with contextlib.suppress(OSError):
                c_w.write(answer)
                await c_w.drain()
        finally:
            to_up.cancel()

    async def _cut(self, c_r, u_r, u_w, c_w) -> None:
        to_up = asyncio.ensure_future(self._copy(c_r, u_w))
        try:
            # The node answers only after COMMIT: its answer means the request took effect.
            await asyncio.wait_for(self._answer(u_r), timeout=60)
            self._count("cut_after_answer")
        finally:
            to_up.cancel()
            c_w.transport.abort()
