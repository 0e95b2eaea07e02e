"""Heartbeat checks in worker processes (docs/decisions.md §12, docs/guide-operator.md §3).

One Python process runs Python on one core at a time (the GIL). On the heartbeat path about
half of the serving process's CPU went to checking (request signature, body, policy lookup,
reporter's signature, duress marker): `[workers] verify = N` moves that half to N worker
processes, so the serving process keeps only HTTP, the write and the receipt.

A worker only reads. It gets the node's public key, its fingerprint and its box key (to open
duress markers) through its stdin pipe at start-up, never the signing key, and never anything in
argv or the environment. It opens the database read-only. The serving process sends each
heartbeat request with the time to judge it by (the node's clock, a test clock included) and
gets back the checked heartbeat, or the refusal with the authenticated request (so the nonce is
still burned). Frames on the pipes: 4-byte big-endian length, then a `marshal` of plain values
(tuples, dicts, str, bytes, int, bool, None; marshal never runs code).

A worker that dies, answers garbage or stops answering (ANSWER_TIMEOUT) is killed and
replaced after a back-off; requests it held are checked in the serving process instead, as are
all requests while no worker is ready.
Nothing was written by a worker, so nothing is lost or done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import marshal
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any

from vault.errors import VeladorError
from vault.nodeproto.messages import Heartbeat

from . import errors as node_errors
from .auth import SignedRequest
from .config import PASSPHRASE_ENV
from .hbcheck import CheckedHeartbeat, Outcome

log = logging.getLogger("velador.node")

FRAME = struct.Struct(">I")
MAX_FRAME = 1 << 20
"""A job is one heartbeat request (its body is at most [limits] max_body, 64 KiB by default)."""
RESPAWN_DELAYS = (0.5, 1, 2, 5, 10, 30)
ANSWER_TIMEOUT = 3.0
"""Seconds a worker holding requests may go without answering (one takes about a millisecond)."""
WATCH_EVERY = 0.5
UNLOCK_ENV = (PASSPHRASE_ENV, "CREDENTIALS_DIRECTORY")
"""Environment variables a worker does not inherit (config.read_passphrase reads them)."""


def _frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return FRAME.pack(len(data)) + data


# --- the worker process: python -m escrow_node.verifier ------------------------------------


def _frames(buf: bytearray) -> list[Any]:
    """The complete frames at the start of `buf`, removed from it."""
    out = []
    while len(buf) >= FRAME.size:
        (n,) = FRAME.unpack_from(buf)
        if n > MAX_FRAME:
            raise ValueError("frame too large")
        if len(buf) < FRAME.size + n:
            break
        # Plain values from our own parent or worker: marshal never runs code.
        out.append(marshal.loads(bytes(buf[FRAME.size : FRAME.size + n])))  # noqa: S302
        del buf[: FRAME.size + n]
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _req_wire(req: SignedRequest | None) -> tuple | None:
    return None if req is None else (req.signer, req.nonce, req.time, req.case_id)


def worker_main() -> None:
    """Check heartbeats until the serving process closes our stdin (the first frame is the
    set-up: keys, database path, tolerance)."""
    # The worker lives exactly as long as its stdin: a Ctrl-C or a service manager's SIGTERM
    # to the whole process group is for the serving process, which then closes that pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The frames own fd 1: anything a library prints goes to stderr (the node log) instead.
    out = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s velador.verifier: %(message)s")
    try:
        _serve(out)
    except BrokenPipeError:
        return  # the serving process is gone (even killed while this one started): nothing to do


def _serve(out: int) -> None:
    buf = bytearray()
    checker = None
    while chunk := os.read(0, 1 << 16):
        buf += chunk
        # Each answer goes out as soon as it is ready: holding a burst's answers until the
        # whole burst was checked left the serving process idle meanwhile (measured: the two
        # processes took turns, a quarter of the machine idle under full load).
        for job in _frames(buf):
            if checker is None:
                checker = _checker(job)
                _write_all(out, _frame(("ready",)))
            else:
                _write_all(out, _frame(_check(checker, job)))


def _checker(init: dict[str, Any]) -> Any:
    import sqlite3
    from contextlib import contextmanager

    from nacl.public import PrivateKey

    from .hbcheck import HeartbeatChecker
    from .policies import PolicyCache

    conn = sqlite3.connect(Path(init["db"]).resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row

    @contextmanager
    def snapshot():  # type: ignore[no-untyped-def]
        yield conn

    return HeartbeatChecker(
        init["node_pk"],
        init["fingerprint"],
        PrivateKey(init["box_sk"]),
        init["tolerance"],
        PolicyCache(),
        snapshot,
    )


def _check(checker: Any, job: tuple) -> tuple:
    jid, header, method, path, query, case_id, body, now = job
    req = None
    try:
        req = checker.authenticate(header, method, path, query, body, now)
        c = checker.examine(req, case_id, body)
        hb = c.hb
        return (
            jid,
            "ok",
            (c.policy.hash, c.roles, hb.seq, hb.time, hb.markers, hb.doc, hb.hash, c.hb_json),
            _req_wire(req),
            c.duress,
        )
    except VeladorError as exc:
        return (jid, "refused", (type(exc).__name__, exc.message, exc.hint), _req_wire(req))
    except Exception:
        log.exception("unexpected error checking a heartbeat")
        return (jid, "bug", None, _req_wire(req))


# --- the serving process side ----------------------------------------------------------------


class WorkerLost(Exception):
    """The worker holding a request went away: check that request in the serving process."""


_ERRORS: dict[str, type[VeladorError]] = {
    name: cls
    for name, cls in vars(node_errors).items()
    if isinstance(cls, type) and issubclass(cls, VeladorError)
}
"""The refusals a worker may report, by class name (anything else is treated as a bug)."""


class _Worker(asyncio.SubprocessProtocol):
    def __init__(self, pool: VerifierPool) -> None:
        self.pool = pool
        self.buf = bytearray()
        self.outbuf: list[bytes] = []
        self.waiting: dict[int, asyncio.Future[tuple]] = {}
        self.ready = False
        self.progress = 0.0
        """Event-loop time of the last answer, or of the first job sent while it had none."""
        self.transport: asyncio.SubprocessTransport | None = None
        self.gone = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, frame: bytes) -> None:
        """Queue a frame; the frames of one event-loop pass go out in one write."""
        assert self.transport is not None
        stdin = self.transport.get_pipe_transport(0)
        if stdin is None or stdin.is_closing():
            raise WorkerLost
        if not self.outbuf:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbuf.append(frame)

    def _flush(self) -> None:
        frames, self.outbuf = self.outbuf, []
        stdin = self.transport.get_pipe_transport(0) if self.transport is not None else None
        if stdin is not None and not stdin.is_closing():
            stdin.write(b"".join(frames))  # type: ignore[attr-defined]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        self.buf += data
        try:
            messages = _frames(self.buf)
        except (ValueError, EOFError, TypeError):
            return self._garbage()
        for msg in messages:
            if msg == ("ready",):
                self.ready = True
                self.pool._ready(self)
                continue
            if not isinstance(msg, tuple) or len(msg) < 4:
                return self._garbage()
            fut = self.waiting.pop(msg[0], None)
            self.progress = asyncio.get_running_loop().time()
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _garbage(self) -> None:
        log.error("verification worker answered garbage; restarting it")
        self.kill()

    def kill(self) -> None:
        if self.transport is not None and not self.gone:
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()

    def process_exited(self) -> None:
        self.gone = True
        self.ready = False
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(WorkerLost())
        self.waiting.clear()
        if self.transport is not None:
            self.transport.close()
        self.pool._exited(self)


class VerifierPool:
    """The serving process's side: starts the workers, hands them requests, replaces them."""

    def __init__(self, svc: Any, processes: int) -> None:
        self.svc = svc
        self.processes = processes
        self.workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._closing = False
        self._failures = 0
        self.answer_timeout = ANSWER_TIMEOUT
        self._watchdog: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Start the workers without waiting for them: until one is ready, requests are checked
        in the serving process."""
        for _ in range(self.processes):
            await self._spawn()
        self._watchdog = asyncio.get_running_loop().call_later(WATCH_EVERY, self._watch)

    def _watch(self) -> None:
        """Kill a worker that holds requests and has answered none for `answer_timeout`
        seconds (stopped, deadlocked): its requests are then checked here and it is replaced.
        A stuck worker must not stall check-ins: the reporter's client gives up after 10 s,
        and check-ins that never arrive end in a release. One timer for the pool, not one per
        request (asyncio.wait_for per heartbeat cost measurable CPU)."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        for w in list(self.workers):
            if w.waiting and not w.gone and loop.time() - w.progress > self.answer_timeout:
                log.error(
                    "a verification worker did not answer in %.0f s; replacing it",
                    self.answer_timeout,
                )
                w.kill()
        self._watchdog = loop.call_later(WATCH_EVERY, self._watch)

    async def _spawn(self) -> None:
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        # Not what unlocks the node identity: the worker gets only the key it needs, above.
        env = {k: v for k, v in os.environ.items() if k not in UNLOCK_ENV}
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            _, worker = await loop.subprocess_exec(
                lambda: _Worker(self),
                sys.executable,
                "-m",
                "escrow_node.verifier",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
                env=env,
            )
        except OSError as exc:
            log.error("could not start a verification worker: %s", exc)
            self._respawn_later()
            return
        svc = self.svc
        worker.send(
            _frame(
                {
                    "node_pk": svc.identity.card.sign_pk,
                    "fingerprint": svc.fingerprint,
                    "box_sk": bytes(svc.identity.box_key),
                    "db": str(svc.store.path),
                    "tolerance": svc.config.timestamp_tolerance,
                }
            )
        )
        self.workers.append(worker)

    def _ready(self, worker: _Worker) -> None:
        self._failures = 0

    def _exited(self, worker: _Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if not self._closing:
            log.warning("a verification worker exited; starting another")
            self._respawn_later()

    def _respawn_later(self) -> None:
        delay = RESPAWN_DELAYS[min(self._failures, len(RESPAWN_DELAYS) - 1)]
        self._failures += 1
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: loop.create_task(self._spawn()))

    async def check(
        self, header: str | None, method: str, path: str, query: str, case_id: str, body: bytes
    ) -> Outcome | None:
        """The outcome from a worker, or None when no worker could check it (the caller checks
        in this process)."""
        ready = [w for w in self.workers if w.ready and not w.gone]
        if len(body) + len(header or "") > MAX_FRAME // 2:
            # Only an operator's max_body over 512 KiB, or a header far over the 2 KiB a
            # signature may have (refused at once here): kept off the pipe, whose frames a
            # worker refuses past MAX_FRAME.
            return None
        if not ready:
            self._fallback()
            return None
        worker = min(ready, key=lambda w: len(w.waiting))
        jid = next(self._ids)
        fut: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()
        if not worker.waiting:
            worker.progress = asyncio.get_running_loop().time()
        worker.waiting[jid] = fut
        try:
            worker.send(
                _frame((jid, header, method, path, query, case_id, body, self.svc.clock.now()))
            )
            msg = await fut
        except WorkerLost:
            worker.waiting.pop(jid, None)
            self._fallback()
            return None
        return self._outcome(msg, case_id)

    def _fallback(self) -> None:
        self.svc.metrics.inc("velador_node_verify_fallbacks_total")

    def _outcome(self, msg: tuple, case_id: str) -> Outcome | None:
        kind, payload, req_w = msg[1], msg[2], msg[3]
        req = SignedRequest(*req_w) if req_w is not None else None
        if kind == "refused":
            cls = _ERRORS.get(payload[0])
            if cls is None:
                return None
            return Outcome(req, None, cls(payload[1], hint=payload[2]))
        if kind != "ok" or req is None:
            return None  # a bug in the worker: the serving process checks (and logs) it
        policy_hash, roles, seq, t, markers, doc, hb_hash, hb_json = payload
        policy = self.svc.policies.get(policy_hash)
        if policy is None:
            with self.svc.store.snapshot() as conn:
                policy = self.svc.policies.current(conn, case_id)
            if policy.hash != policy_hash:  # rotated since the worker looked: retry as usual
                return Outcome(
                    req,
                    None,
                    node_errors.Conflict(
                        "the case policy changed while this heartbeat was checked; retry"
                    ),
                )
        hb = Heartbeat(seq, t, markers, doc)
        hb.__dict__["hash"] = hb_hash  # the cached property, as the worker computed it
        return Outcome(
            req, CheckedHeartbeat(req, case_id, policy, roles, hb, msg[4], hb_json), None
        )

    async def close(self) -> None:
        """Close the workers' stdin (they exit at end of input); kill any still there."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for w in list(self.workers):
            if w.transport is not None:
                stdin = w.transport.get_pipe_transport(0)
                if stdin is not None:
                    stdin.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while any(not w.gone for w in self.workers) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for w in self.workers:
            w.kill()


if __name__ == "__main__":
    worker_main()
