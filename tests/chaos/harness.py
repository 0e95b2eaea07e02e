"""Chaos harness: five real escrow nodes, a reporter and two recipients under seeded faults.

Set-up. Five `velador node serve` processes (tests/chaos/cluster.py) on loopback, with
second-scale `--tick`, each reading its own test-clock file; a fault-injecting proxy
(tests/chaos/proxy.py) with one port per directed link, so every request between two parties
can be passed, slowed, refused, cut after the node answered, or held past the sender's timeout;
peers reach each other only through it (`[peers] urls`). An aiosmtpd server and a webhook
receiver (tests/chaos/receivers.py) count deliveries by their stable id. The reporter and the
recipients are library calls: `make_heartbeat` + `NodeClient` over HTTP, through the proxy.

Cases. A case is registered at all five nodes (K = 3 of 5 shares; every = 3600 s, grace =
600 s, reminders 900 s and 300 s before the deadline). Its reporter checks in on time for a
seeded number of steps (tests/chaos/faults.py: never more than 3000 s between two attempts),
each heartbeat reaching all, some or none of the nodes, then stops for good; the next case is
registered then, so two cases overlap. A case is complete when all five nodes released it, every
notification it caused has arrived, and both recipients recovered the release secret from K
fetched envelopes.

One step (= one fault cycle):
    1. faults: SIGKILL nodes, change link modes, start or heal a node-to-node partition, then
       restart nodes (a restarted node catches up at start-up, including releases that fell due
       while it was down); wait until the restarted nodes have settled; CHECK.
    2. the reporter maybe checks in (seq + 1, signed time = base time) through its links, to
       all five nodes in parallel, and sometimes a node is SIGKILLed while those requests are in
       flight; the recipients fetch releases from nodes that released; a new case is
       registered if needed.
    3. base time moves 300-1200 s; clock skews change; all clock files switch at once; each live
       node reads its clock (GET /v1/health); sometimes a node is SIGKILLed a fraction of a
       second later, in the middle of its sweep, pre-release sync, release or deliveries; wait
       until every live node has settled (no case with next_wake <= its clock) within
       SETTLE_BOUND real seconds; CHECK.
After the fault cycles, a wind-down without faults (everything healed and restarted, reporters
silent, one jump past every deadline) lets every case complete; a real `velador node audit
--verify` process per node ends the run.

Time. Base time is the reporter's clock. Node i's clock is base + skew_i with |skew_i| <= 150
s: the documented tolerance is 300 s between any two clocks (docs/protocol.md §2.3,
`[limits] timestamp_tolerance`, escrow_node/auth.py TOLERANCE for signed requests, and
engine.FUTURE_SKEW for heartbeats), so any two nodes, and the reporter and any node, stay
within it.

Invariants, asserted at every CHECK (a violation stops the run and prints the seed). (a) and
(b) are docs/protocol.md §5.4 invariants 1 and 2 seen from outside; (e) is §8.3; (f) is §6.2.

(a) No false release. When node N is first seen RELEASED for case C at its time R:
    a1. the reason is "deadline", and N's own newest check-in L satisfies L + every + grace <= R;
    a2. N acknowledged no heartbeat of C signed at t with t + every + grace > R;
    a3. no peer P that N could ask held a newer heartbeat that would have stopped the release:
        for every P that was alive throughout the window in which the release happened, and
        whose link N->P was clean (up or slow) in that window, if P's database - read before
        the window began - held heartbeat seq s > N's seq signed at t, then t + every + grace
        <= R. The window is phase 1 for a node released at start-up and phase 3 otherwise;
        knowledge only grows, so what P held before the window it still held at the sync.
    What is NOT asserted, by design: a node that the reporter could not reach, and that could
    not reach any peer holding a newer heartbeat at the moment of its pre-release sync (they
    were down, partitioned, behind a flaky link, or slower than `peer_timeout` to answer - the
    last taken from N's log line "pre-release sync: peer P: ... did not answer in time"; any
    other failure on a clean link is not excused), may release: a release must not be
    preventable by taking peers down (escrow_node/gossip.py).
(b) Release once the reporter stops. For a case whose reporter stopped, with t_last the newest
    time it ever signed: every live node whose clock is >= max(t_last, its registration time)
    + every + grace is RELEASED; and every live node settles (no due case left) within
    SETTLE_BOUND real seconds of the clock moving (the documented bound: one sweep tick plus
    the pre-release sync, one `peer_timeout`, with room for a loaded machine). Once every case is
    stopped, healed and restarted, all five nodes release every case.
(c) No acknowledged heartbeat lost. For every receipt the reporter got from node N (seq s,
    ref = the heartbeat's hash): N's stored seq >= s, and N's audit log has a heartbeat entry
    with that hash - at every check, across SIGKILLs, including SIGKILLs while heartbeats are in
    flight. A receipt names this heartbeat and promises a deadline >= its time + every.
(d) No envelope lost. Every node's stored envelopes equal, byte for byte (canonical JSON), the
    ones registered; and every live node's custody proof over a fresh nonce (GET .../custody)
    equals custody_digest(nonce, registered envelopes). After release the recipients recover.
(e) No notification lost or sent twice. For each node and case, the notifications its audit
    log records (effects notify:EVENT:AUDIENCE) are exactly its outbox rows, one per address;
    every delivery that arrived was queued by some node; a row marked delivered has arrived; no
    event (released per node and address; overdue and checked_in per deadline; at most one
    reminder per offset per deadline) has two distinct delivery ids; and once a case is complete,
    every row has arrived at least once (repeats of the same id are allowed: at-least-once),
    and, independently of the audit log, every node that released queued `overdue` (reporter,
    editors) and `released` (every address of every audience).
(f) Every node's audit chain verifies: `velador node audit --data DIR --verify` exits 0 (in
    process after every step; as a real subprocess at the end).

Adversarial faults (issue 11; tests/chaos/adversary.py, faults.py, proxy.py), seeded like the
rest: node-to-node links turn hostile (the "peer" drips one byte a second, stalls, answers
without end, or answers garbage); a stranger registers cases at two nodes naming two fake nodes
whose URL is a tarpit that drips, with a webhook at the tarpit; one node's clock jumps 2, 5 or
30 days ahead for 1-3 steps, then the node is restarted on the right time; the reporter checks
in with the duress passphrase (policy duress = "alert"). (b) above is what catches a node that
waits on a hostile peer: every live node must settle within SETTLE_BOUND real seconds, the
stranger's cases included. Two more invariants:

(g) No release on a jumped clock. A node whose clock is days ahead must not release a case whose
    reporter still checks in while it can ask a majority of its peers (alive, clean link) for
    the time. While jumped it is exempt from the settle bound and from (b) (it may rightly hold
    a due case), and is held to both again once restarted on the right time.
(h) No tell of duress. A receipt for a duress check-in has the fields of a normal receipt, a
    live state and the normal deadline; /v1/health and /v1/card (less the clock) answer the same
    before and after it; and no node serves /metrics on its public port.

Not injected here (covered by their own end-to-end tests): rotations that reach only some nodes
(tests/e2e/test_rotate.py) and nodes restored from old backups (tests/node/test_restore.py,
tests/e2e/test_rotate.py). A restored node forgets acknowledged heartbeats and queued notices by
design, so invariants (c) and (e) would need a model of which backup it came from.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from cli.node_cmds import node as node_cli
from tests.node.builders import make_world
from vault.encoding import canonical_json
from vault.envelope import open_envelope
from vault.errors import VeladorError
from vault.nodeproto.client import NodeClient
from vault.nodeproto.messages import custody_digest, make_heartbeat
from vault.shares import combine

from . import adversary as adv
from . import invariants as inv
from .cluster import REPO, Clocks, Node
from .faults import Plan, Planner, Script
from .proxy import CLEAN, Proxy
from .receivers import Receivers

T0 = 1_767_225_600
NODES = [f"node-{c}" for c in "abcde"]
CLIENTS = ["reporter", "outlet0", "outlet1"]
K = 3


class ChaosFailure(AssertionError):
    def __init__(
        self, seed: int, step: int, cycles: int, violations: list[inv.Violation], where: str
    ) -> None:
        self.seed, self.step, self.violations = seed, step, violations
        lines = "\n".join(f"  {v}" for v in violations)
        # The schedule of the first N steps does not depend on N: --cycles STEP replays up to
        # the failing step (a failure in the wind-down needs the original count).
        super().__init__(
            f"chaos seed {seed}: invariant violated at step {step} ({where}):\n{lines}\n"
            f"replay: python -m tests.chaos.run --seed {seed} --cycles {min(step, cycles)}"
        )


@dataclass(frozen=True)
class Settings:
    seed: int
    cycles: int
    tick: float = 0.3
    every: int = 3600
    grace: int = 600
    remind: tuple[int, ...] = (900, 300)
    max_skew: int = 150
    peer_timeout: float = 2.0
    client_timeout: float = 2.0
    long_hold: float = 2.5
    """Longer than every client's timeout: a held request arrives after its sender gave up."""
    settle_bound: float = 30.0
    lose_answer: float = 0.03
    wind_down_bound: float = 120.0
    subprocess_audit: bool = True
    """End with `velador node audit --verify` as a real process per node (the same click
    command also runs in process after every step)."""
    hostile_rate: float = 0.15
    """Per step: the chance of a hostile peer link; half of it, a hostile registrant; a third
    of it, one node's clock jumping days ahead (tests/chaos/faults.py)."""
    duress_rate: float = 0.1
    """The chance that a check-in is made with the duress passphrase."""


@dataclass
class CaseModel:
    world: Any
    case_id: str
    registered_step: int
    lifetime: int
    seq: int = 0
    last_try: int = 0
    t_last: int = 0
    stopped: bool = False
    released: dict[str, int] = field(default_factory=dict)
    shares: dict[str, dict[str, str]] = field(default_factory=dict)
    """recipient -> holder id -> mnemonic fetched and opened."""
    recovered: set[str] = field(default_factory=set)
    complete: bool = False

    @property
    def policy(self):
        return self.world.policy


class BaseClock:
    def __init__(self, now: int) -> None:
        self.t = now

    def now(self) -> int:
        return self.t


class Harness:
    def __init__(self, s: Settings, root: Path, say=print) -> None:
        self.s = s
        self.root = root
        self.say = say
        self.rules = inv.Rules(s.every, s.grace, len(s.remind))
        self.counts: collections.Counter[str] = collections.Counter()
        self.checks: collections.Counter[str] = collections.Counter()
        self.clock = BaseClock(T0)
        self.step_no = 0
        self.cases: list[CaseModel] = []
        self.acks: list[inv.Ack] = []
        self.order = 0
        self.skew = dict.fromkeys(NODES, 0)
        self.base_mode: dict[tuple[str, str], str] = {}
        self.partition: tuple[frozenset[str], int] | None = None
        self.caches = {n: inv.AuditCache() for n in NODES}
        self.log_pos = dict.fromkeys(NODES, 0)
        self.people: dict[str, Any] = {}
        self.targets: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self.max_settle = 0.0
        self.timing: collections.Counter[str] = collections.Counter()
        self.nodes: dict[str, Node] = {}
        self.proxy: Proxy | None = None
        self.recv: Receivers | None = None
        self.http = httpx.Client(
            timeout=s.client_timeout, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chaos")
        self.planner = Planner(s.seed, NODES, CLIENTS, s.max_skew, s.hostile_rate)
        self.tarpit: adv.Tarpit | None = None
        self.hostile_ids: set[str] = set()
        self.hostile_people: dict[str, Any] = {}
        self.jump: tuple[str, int, int] | None = None
        """(node, seconds ahead, the step at which it ends) while one node's clock is ahead."""
        self.receipt_keys: frozenset[str] | None = None
        self.script = Script(s.seed, NODES)

    # --- set-up and tear-down -----------------------------------------------------------------

    def setup(self) -> None:
        self.recv = Receivers(self.s.seed, self.s.lose_answer)
        self.clocks = Clocks(self.root / "clocks")
        self.clocks.write(dict.fromkeys(NODES, T0))
        with self.timed("setup_init"):
            for name in NODES:
                self.nodes[name] = Node(self.root / "nodes", name, self.s.tick, self.clocks)
        self.proxy = Proxy(self.s.seed, self.s.long_hold)
        # The tarpit: a link that always drips, behind fake node cards (tests/chaos/adversary.py).
        self.proxy.add("tarpit", "void", self.nodes[NODES[0]].port)
        self.proxy.set_mode("tarpit", "void", "drip")
        self.tarpit = adv.make_tarpit(self.root / "fake", self.proxy.url("tarpit", "void"))
        for src in CLIENTS + NODES:
            for dst in NODES:
                if src != dst:
                    self.proxy.add(src, dst, self.nodes[dst].port)
                    self.base_mode[(src, dst)] = "up"
        for name, n in self.nodes.items():
            n.configure(
                engine={"tick": self.s.tick},
                peers={
                    "timeout": self.s.peer_timeout,
                    "urls": {
                        p.card.fingerprint: self.proxy.url(name, p.name)
                        for p in self.nodes.values()
                        if p is not n
                    },
                },
                smtp={
                    "host": "127.0.0.1",
                    "port": self.recv.smtp_port,
                    "security": "plain",
                    "from": "node@velador.test",
                },
                notify={"webhook_timeout": 5.0},
            )
        with self.timed("setup_start"):
            list(self.pool.map(lambda n: n.start(), self.nodes.values()))

    def close(self) -> None:
        """Stop every process this harness started; checked by pid."""
        signalled = set()
        for name, n in self.nodes.items():  # SIGTERM all first, then wait for each
            if n.alive:
                with contextlib.suppress(Exception):
                    n.proc.terminate()
                    signalled.add(name)
        for name, n in self.nodes.items():
            with contextlib.suppress(Exception):
                n.stop(signalled=name in signalled)
        for n in self.nodes.values():
            for proc in n.procs:
                # Each Popen here was waited for (reaped) unless it is still running; a running
                # one is still our child, so its pid cannot have been reused: kill it by pid.
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                    self.counts["orphans_killed"] += 1
        if self.proxy is not None:
            self.proxy.close()
        if self.recv is not None:
            self.recv.close()
        self.http.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- helpers --------------------------------------------------------------------------------

    def alive(self) -> set[str]:
        return {name for name, n in self.nodes.items() if n.alive}

    def client(self, name: str, identity, via: str | None = None):
        node = self.nodes[name]
        if via is None:
            return NodeClient(node.card, identity, self.clock, 20.0, url=node.url)
        url = self.proxy.url(via, name)
        return NodeClient(node.card, identity, self.clock, self.s.client_timeout, http=self.http,
                          url=url)  # fmt: skip

    def ahead(self, name: str) -> int:
        """How far this node's clock is ahead because of a jump fault (0 without one)."""
        return self.jump[1] if self.jump is not None and self.jump[0] == name else 0

    def jumped(self) -> set[str]:
        return {self.jump[0]} if self.jump is not None else set()

    def effective_mode(self, src: str, dst: str) -> str:
        if self.partition is not None and src in NODES and dst in NODES:
            side = self.partition[0]
            if (src in side) != (dst in side):
                return "down"
        return self.base_mode[(src, dst)]

    def apply_modes(self) -> None:
        for src, dst in self.base_mode:
            if self.proxy.set_mode(src, dst, self.effective_mode(src, dst)):
                self.counts["link_changes"] += 1

    def views(self) -> dict[str, inv.NodeView]:
        out = {}
        for name, n in self.nodes.items():
            with contextlib.closing(n.db()) as conn:
                out[name] = inv.read_node(name, conn, self.caches[name])
        return out

    def fail(self, violations: list[inv.Violation], where: str) -> None:
        if violations:
            raise ChaosFailure(self.s.seed, self.step_no, self.s.cycles, violations, where)

    def settle(self, names: set[str], where: str) -> None:
        """Wait until no live node has a case due at its clock (bound: SETTLE_BOUND s)."""
        t0 = time.monotonic()
        # A node whose clock jumped ahead may hold a due case it must not release: (g) checks
        # it instead; it is held to the bound again once it runs on the right time.
        pending = set(names) - self.jumped()
        late: dict[str, list] = {}
        while pending:
            for name in sorted(pending):
                n = self.nodes[name]
                if not n.alive:  # killed on purpose in the middle of the step
                    pending.discard(name)
                    continue
                with contextlib.closing(n.db()) as conn:
                    rows = conn.execute(
                        "SELECT case_id, state, next_wake FROM cases"
                        " WHERE next_wake IS NOT NULL AND next_wake <= ?",
                        (n.clock,),
                    ).fetchall()
                if rows:
                    late[name] = [tuple(r) for r in rows]
                    self.counts["settle_polls_with_due_cases"] += 1
                else:
                    pending.discard(name)
            if not pending:
                break
            if time.monotonic() - t0 > self.s.settle_bound:
                self.fail(
                    [
                        inv.Violation(
                            "b",
                            f"{name} did not advance {late[name]} within {self.s.settle_bound} s"
                            f" at its clock {self.nodes[name].clock}",
                        )
                        for name in sorted(pending)
                    ],
                    where,
                )
            time.sleep(0.03)
        self.max_settle = max(self.max_settle, time.monotonic() - t0)
        self.checks["b"] += len(names)

    def sync_failures(self, name: str) -> set[str]:
        """Peers named in this node's 'pre-release sync: peer P: ...' warnings since last CHECK."""
        n = self.nodes[name]
        text = n.log_text(self.log_pos[name])
        self.log_pos[name] += len(text.encode())
        out = set()
        for line in text.splitlines():
            # Only a peer too slow to answer is excused; any other failure on a clean link
            # (refused signature, bad answer) is the node's fault and is not.
            if "pre-release sync: peer " in line and "did not answer in time" in line:
                out.add(line.split("pre-release sync: peer ", 1)[1].split(":", 1)[0])
        return out

    # --- the reporter and the recipients --------------------------------------------------------

    def new_case(self) -> None:
        w = make_world(
            self.root / "people", [self.nodes[n].card for n in NODES], every=self.s.every,
            grace=self.s.grace, remind=self.s.remind, threshold=K, created=self.clock.now(),
            people=self.people,
        )  # fmt: skip
        cid = w.policy.case_id
        recv = self.recv
        if not self.people:  # make_world fills only a non-empty dict: reuse the first world's
            self.people = {"reporter": w.reporter, "outsider": w.outsider}
            self.people.update({f"editor{i}": e for i, e in enumerate(w.editors)})
            self.people.update({f"outlet{i}": r for i, r in enumerate(w.recipients)})

        def register(name: str) -> None:
            node = self.nodes[name]
            with self.client(name, w.reporter) as c:
                c.register_case(w.policy, w.envs_for(node.card))
                c.subscribe(cid, "email", "reporter@newsroom.example")
            for i, e in enumerate(w.editors):
                with self.client(name, e) as c:
                    c.subscribe(cid, "webhook", f"{recv.url}/editor{i}")
            for i, r in enumerate(w.recipients):
                with self.client(name, r) as c:
                    c.subscribe(cid, "email", f"desk{i}@outlet.example")
                    c.subscribe(cid, "webhook", f"{recv.url}/outlet{i}")

        list(self.pool.map(register, NODES))
        model = CaseModel(w, cid, self.step_no, self.script.lifetime())
        model.last_try = model.t_last = self.clock.now()
        self.cases.append(model)
        self.counts["cases"] += 1
        self.targets[cid] = {
            "reporter": [("email", "reporter@newsroom.example")],
            "editors": [("webhook", f"{recv.url}/editor{i}") for i in range(len(w.editors))],
            "recipients": [
                ct
                for i in range(len(w.recipients))
                for ct in (
                    ("email", f"desk{i}@outlet.example"),
                    ("webhook", f"{recv.url}/outlet{i}"),
                )
            ],
        }

    def checkin(self, case: CaseModel) -> None:
        reach = self.script.reach()
        for name, mode in reach.modes.items():
            self.base_mode[("reporter", name)] = mode
        self.apply_modes()
        case.seq += 1
        now = self.clock.now()
        duress = self.script.duress(self.s.duress_rate)
        watch = sorted(self.alive()) if duress else []
        public_before = {}
        for n in watch:  # a node may be SIGKILLed at any moment here (kill_in_checkin)
            with contextlib.suppress(httpx.HTTPError):
                public_before[n] = adv.public_view(self.nodes[n].url)
        doc = make_heartbeat(case.policy, case.world.reporter.sign_key, case.seq, now, duress)
        if duress:
            self.counts["duress_checkins"] += 1
        ref = hashlib.blake2b(canonical_json(doc), digest_size=32).hexdigest()
        case.last_try = case.t_last = now
        self.counts["heartbeats_sent"] += 1

        def send(name: str):
            try:
                with self.client(name, case.world.reporter, via="reporter") as c:
                    return name, c.heartbeat(doc)
            except VeladorError:
                return name, None

        for name, receipt in self.pool.map(send, NODES):
            if receipt is None:
                self.counts["heartbeat_requests_failed"] += 1
                continue
            self.counts["heartbeats_acked"] += 1
            self.checks["c"] += 1
            if receipt.get("ref") != ref:
                self.fail([inv.Violation("c", f"{name}: receipt for another heartbeat")], "ack")
            # The receipt the reporter reads must not promise less time than it earned.
            if receipt["state"] in ("ARMED", "REMINDED", "OVERDUE") and (
                receipt["deadline"] < now + self.s.every
                or receipt["release_at"] < now + self.s.every + self.s.grace
            ):
                self.fail(
                    [inv.Violation("c", f"{name}: receipt {receipt} for a heartbeat at {now}")],
                    "ack",
                )
            if duress:
                self.checks["h"] += 1
                self.fail(
                    adv.check_receipt_alike(name, receipt, self.receipt_keys, now, self.s.every),
                    "duress receipt",
                )
            elif self.receipt_keys is None:
                self.receipt_keys = frozenset(receipt)
            self.order += 1
            self.acks.append(inv.Ack(name, case.case_id, case.seq, now, ref, self.order))
        bad = []
        for name in watch:
            if not self.nodes[name].alive or name not in public_before:
                continue  # killed while the check-in was in flight
            with contextlib.suppress(httpx.HTTPError):
                after = adv.public_view(self.nodes[name].url)
                self.checks["h"] += 1
                bad += adv.check_public_views(name, public_before[name], after)
        self.fail(bad, "duress check-in")

    def fetch(self, case: CaseModel) -> None:
        """Recipients fetch from nodes seen RELEASED, through their own (faulty) links."""
        for i, r in enumerate(case.world.recipients):
            who = f"outlet{i}"
            got = case.shares.setdefault(who, {})
            if who in case.recovered:
                continue
            for name in sorted(case.released):
                holder = f"node{NODES.index(name)}"
                if holder in got:
                    continue
                self.counts["fetch_attempts"] += 1
                try:
                    with self.client(name, r, via=who) as c:
                        rel = c.fetch_release(case.case_id)
                except VeladorError:
                    continue
                for env in rel.envelopes:
                    share = open_envelope(env, rel.policy, r.box_key)
                    got[share.holder] = share.mnemonic
                self.counts["fetches"] += 1
            if len(got) >= K:
                secret = combine(sorted(got.values())[:K])
                self.checks["d"] += 1
                if secret != case.world.secret:
                    self.fail([inv.Violation("d", f"{who} recovered a wrong secret")], "recover")
                case.recovered.add(who)
                self.counts["recoveries"] += 1

    # --- one step -------------------------------------------------------------------------------

    def step(self, faults: bool = True) -> None:
        self.step_no += 1
        active = [c for c in self.cases if not c.stopped]
        need_case = not active and faults
        alive = self.alive()
        # Phase 1: faults.
        if faults:
            plan = self.planner.plan(
                alive, self.partition is not None, need_case, jumped=self.jump is not None
            )
        else:
            # One jump past every deadline: the reporter stops now, so every node is due.
            jump = self.s.every + self.s.grace + self.s.max_skew
            plan = Plan(restarts=sorted(set(NODES) - alive), step=jump)
        if self.jump is not None and (self.step_no >= self.jump[2] or not faults):
            # The jump ends: the node's FileClock never goes back while it runs (as a real
            # clock's monotonic reading would not), so it is restarted on the right time.
            name = self.jump[0]
            self.jump = None
            if self.nodes[name].alive and name not in plan.kills + plan.crash_restarts:
                plan.crash_restarts.append(name)
            self.clocks.write({n: self.clock.now() + self.skew[n] for n in NODES})
        for name in plan.kills + plan.crash_restarts:
            self.nodes[name].kill()
            self.counts["kills"] += 1
        self.counts["crash_restarts"] += len(plan.crash_restarts)
        if self.partition is not None:
            side, left = self.partition
            self.partition = (side, left - 1) if left > 1 else None
        if plan.partition is not None:
            self.partition = plan.partition
            self.counts["partitions"] += 1
        for link, mode in plan.links.items():
            self.base_mode[link] = mode
        if not faults:
            self.partition = None
            for link in self.base_mode:
                self.base_mode[link] = "up"
        self.apply_modes()
        before = self.views()
        up_before = self.alive()
        restarts = sorted(set(plan.restarts) | set(plan.crash_restarts))
        if restarts:
            with self.timed("restart"):
                failed = [e for e in self.pool.map(self.start, restarts) if e is not None]
            self.fail(failed, "restart")
            self.counts["restarts"] += len(restarts)
            self.settle(set(restarts), "restart")
        with self.timed("check"):
            self.check("after restarts", before, up_before, windowed=set(restarts))
        with self.timed("parties"):
            self.parties(need_case, faults, plan.kill_in_checkin, plan.hostile_case)
        before = self.views()
        # Phase 3: time moves, skews change, every clock file switches at once.
        self.clock.t += plan.step
        for name, skew in plan.skews.items():
            self.skew[name] = skew
            self.counts["clock_skews"] += 1
        if plan.jump is not None:
            name, ahead, steps = plan.jump
            self.jump = (name, ahead, self.step_no + steps)
            self.counts["clock_jumps"] += 1
        self.clocks.write({n: self.clock.now() + self.skew[n] + self.ahead(n) for n in NODES})
        alive = self.alive()
        for name in alive:
            self.nodes[name].read_clock()
        timer = self.kill_later(plan.kill_in_advance)
        with self.timed("settle"):
            self.settle(alive, "advance")
        self.join(timer)
        alive = self.alive()
        with self.timed("check"):
            self.check("after advance", before, alive, windowed=alive, deep=True)

    @contextlib.contextmanager
    def timed(self, what: str):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timing["phase_" + what] += time.monotonic() - t0

    def start(self, name: str) -> inv.Violation | None:
        """Start a node; a node that cannot start again cannot release: a (b) violation."""
        try:
            self.nodes[name].start()
        except RuntimeError as exc:
            tail = self.nodes[name].log_text()[-2000:]
            return inv.Violation("b", f"{name} did not start again: {exc}\n{tail}")
        return None

    def kill_later(self, what: tuple[str, float] | None) -> threading.Timer | None:
        """SIGKILL a node after a delay, in the middle of whatever it is doing."""
        if what is None or not self.nodes[what[0]].alive:
            return None
        name, delay = what

        def kill() -> None:
            node = self.nodes[name]
            if node.alive:
                node.kill()
                self.counts["kills"] += 1
                self.counts["kills_mid_request"] += 1

        timer = threading.Timer(delay, kill)
        timer.start()
        return timer

    @staticmethod
    def join(timer: threading.Timer | None) -> None:
        if timer is not None:
            timer.join()

    def hostile_case(self) -> None:
        alive = sorted(self.alive())
        if len(alive) < 2:
            return
        cid, accepted = adv.register_hostile_case(
            self.root / "hostile", self.nodes, alive, self.tarpit, self.clock,
            self.hostile_people, self.s.every, self.s.grace,
        )  # fmt: skip
        self.counts["hostile_registrations"] += 1
        self.counts["hostile_registrations_accepted_at_nodes"] += accepted
        if cid is not None:
            self.hostile_ids.add(cid)

    def parties(
        self,
        need_case: bool,
        faults: bool,
        kill: tuple[str, float] | None = None,
        hostile_case: bool = False,
    ) -> None:
        """Phase 2: the reporter, the recipients, a new case."""
        # Registration is a signed request: a node whose clock jumped days ahead refuses it
        # (timestamp tolerance), so a new case waits until the jump is over.
        if need_case and len(self.alive()) == len(NODES) and self.jump is None:
            self.new_case()
        if hostile_case:
            self.hostile_case()
        for case in self.cases:
            if case.stopped:
                continue
            if self.step_no - case.registered_step >= case.lifetime or not faults:
                case.stopped = True
                self.counts["reporters_stopped"] += 1
            elif self.script.checks_in(self.clock.now() - case.last_try):
                timer = self.kill_later(kill)
                self.checkin(case)
                self.join(timer)
        for case in self.cases:
            if case.released and len(case.recovered) < len(CLIENTS) - 1:
                self.fetch(case)

    # --- CHECK ----------------------------------------------------------------------------------

    def check(
        self,
        where: str,
        before: dict[str, inv.NodeView],
        up: set[str],
        windowed: set[str],
        deep: bool = False,
    ) -> None:
        """All invariants. `before`: views read before the window in which nodes in `windowed`
        could have released; `up`: nodes alive throughout that window."""
        received_before = self.recv.record.counts()
        views = self.views()
        alive = self.alive()
        bad: list[inv.Violation] = []
        failures = {name: self.sync_failures(name) for name in NODES}
        for case in self.cases:
            cid = case.case_id
            for name, view in views.items():
                cv = view.cases.get(cid)
                if cv is None:
                    bad.append(inv.Violation("d", f"{name} lost case {cid}"))
                    continue
                self.checks["d"] += 1
                bad += inv.check_envelopes(name, cv, case.world.envs_for(self.nodes[name].card))
                if cv.state == "RELEASED" and name not in case.released:
                    case.released[name] = cv.released_at
                    self.counts["releases"] += 1
                    peers = {}
                    for p in NODES:
                        if p == name:
                            continue
                        pv = before[p].cases.get(cid)
                        seq, t = (pv.hb_seq, pv.hb_time) if pv else (0, None)
                        peers[p] = inv.PeerKnowledge(
                            seq,
                            t,
                            reachable=name in windowed
                            and p in up
                            and p in alive
                            and self.proxy.mode(name, p) in CLEAN,
                            sync_failed=p in failures[name],
                        )
                        if peers[p].reachable and p in failures[name]:
                            self.counts["sync_timeouts_on_clean_links"] += 1
                    self.checks["a"] += 1
                    bad += inv.check_release(name, cv, self.rules, peers, self.acks)
                    if name in self.jumped():
                        self.checks["g"] += 1
                        bad += adv.check_jumped_release(
                            name, cid, case.stopped,
                            sum(1 for k in peers.values() if k.reachable), len(peers),
                        )  # fmt: skip
                    if not case.stopped:
                        self.counts["releases_while_reporter_checks_in"] += 1
                    if any(k.reachable and not k.sync_failed for k in peers.values()):
                        self.counts["releases_with_askable_peers"] += 1
                if case.stopped and name in alive and name not in self.jumped():
                    self.checks["b"] += 1
                    bad += inv.check_liveness(name, cv, self.nodes[name].clock, case.t_last,
                                              self.rules)  # fmt: skip
        for name, view in views.items():
            n, v = inv.check_acks(name, view, self.acks)
            self.checks["c"] += n
            bad += v
        complete = {c.case_id for c in self.cases if c.complete}
        received = self.recv.record.counts()
        # A stranger's cases notify the tarpit (or nobody): (e) is about the reporters' cases.
        honest = [
            inv.NodeView(
                v.name, v.cases, [r for r in v.outbox if r.case_id not in self.hostile_ids]
            )
            for v in views.values()
        ]
        n, v = inv.check_notifications(
            honest, received, {c.case_id: self.rules for c in self.cases},
            self.targets, complete, received_before,
        )  # fmt: skip
        self.checks["e"] += n
        bad += v
        if deep:
            bad += self.custody(alive)
            bad += self.audit_chains()
        self.fail(bad, where)
        self.complete_cases(views, received)

    def custody(self, alive: set[str]) -> list[inv.Violation]:
        out = []
        for case in self.cases:
            if case.complete:  # its rows are still compared every CHECK; spare the API calls
                continue
            editor = case.world.editors[0]
            for name in sorted(alive - self.jumped()):  # a jumped node refuses signed requests
                nonce = secrets.token_bytes(32)
                try:
                    with self.client(name, editor) as c:
                        proof = c.custody(case.case_id, nonce)
                except VeladorError as exc:
                    out.append(inv.Violation("d", f"{name}: custody proof refused: {exc}"))
                    continue
                want = custody_digest(nonce, case.world.envs_for(self.nodes[name].card))
                self.checks["d"] += 1
                if proof["digest"] != want:
                    out.append(inv.Violation("d", f"{name} {case.case_id}: custody digest differs"))
        return out

    def audit_chains(self) -> list[inv.Violation]:
        out = []
        for name, n in self.nodes.items():
            self.checks["f"] += 1
            out += audit_check(name, n.dir)
        return out

    def complete_cases(self, views: dict[str, inv.NodeView], received) -> None:
        for case in self.cases:
            if case.complete or len(case.released) < len(NODES):
                continue
            if len(case.recovered) < 2:
                continue
            rows = [r for v in views.values() for r in v.outbox if r.case_id == case.case_id]
            if any(received[r.key] == 0 for r in rows):
                continue
            self.fail(
                inv.released_notices_complete(views.values(), case.case_id,
                                              self.targets[case.case_id]),
                "case complete",
            )  # fmt: skip
            case.complete = True
            self.counts["cases_complete"] += 1

    # --- the whole run --------------------------------------------------------------------------

    def run(self) -> None:
        t0 = time.monotonic()
        for i in range(self.s.cycles):
            self.step()
            self.counts["fault_cycles"] += 1
            if (i + 1) % 10 == 0:
                self.say(
                    f"chaos: {i + 1} cycles, {time.monotonic() - t0:.0f} s, "
                    f"{self.counts['kills']} kills, {self.counts['releases']} releases, "
                    f"{sum(self.checks.values())} checks"
                )
        with self.timed("wind_down"):
            self.wind_down()
        if self.s.subprocess_audit:
            with self.timed("final_audit"):
                self.final_audit()
        self.counts["seconds"] = round(time.monotonic() - t0)

    def wind_down(self) -> None:
        """No more faults: heal, restart, stop every reporter, let every case complete."""
        end = time.monotonic() + self.s.wind_down_bound
        while True:
            self.step(faults=False)
            if all(c.complete for c in self.cases):
                return
            if time.monotonic() > end:
                missing = [
                    inv.Violation(
                        "b" if len(c.released) < len(NODES) else "e",
                        f"{c.case_id} not complete: released by {sorted(c.released)}, "
                        f"recovered by {sorted(c.recovered)}",
                    )
                    for c in self.cases
                    if not c.complete
                ]
                self.fail(missing, "wind-down")

    def final_audit(self) -> None:
        """(f) once more, with the real `velador node audit --verify` process per node."""
        procs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "node",
                    "audit",
                    "--data",
                    str(n.dir),
                    "--verify",
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, n in self.nodes.items()
        }
        bad = []
        for name, proc in procs.items():
            try:
                out, _ = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.checks["f"] += 1
            if proc.returncode != 0:
                bad.append(inv.Violation("f", f"{name}: {out}".strip()))
        self.fail(bad, "final audit")

    # --- report ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        p = self.proxy.counts if self.proxy else collections.Counter()
        out = {
            "seed": self.s.seed,
            "fault_cycles": self.counts["fault_cycles"],
            "steps": self.step_no,
            "kills": self.counts["kills"],
            "restarts": self.counts["restarts"],
            "crash_restarts": self.counts["crash_restarts"],
            "kills_mid_request": self.counts["kills_mid_request"],
            "dropped_requests": p["conn_refuse"] + p["conn_cut"],
            "dropped_refused": p["conn_refuse"],
            "dropped_after_answer": p["conn_cut"],
            "delayed_requests": p["conn_short"] + p["conn_long"],
            "delayed_past_timeout": p["conn_long"],
            "passed_requests": p["conn_pass"],
            "partitions": self.counts["partitions"],
            "link_changes": self.counts["link_changes"],
            "clock_skews": self.counts["clock_skews"],
            "clock_jumps": self.counts["clock_jumps"],
            "hostile_peer_answers": {
                m: p[f"conn_{m}"] for m in ("drip", "stall", "huge", "garbage")
            },
            "hostile_registrations": self.counts["hostile_registrations"],
            "hostile_registrations_accepted_at_nodes": self.counts[
                "hostile_registrations_accepted_at_nodes"
            ],
            "duress_checkins": self.counts["duress_checkins"],
            "cases": self.counts["cases"],
            "cases_complete": self.counts["cases_complete"],
            "heartbeats_sent": self.counts["heartbeats_sent"],
            "heartbeats_acked": self.counts["heartbeats_acked"],
            "heartbeat_requests_failed": self.counts["heartbeat_requests_failed"],
            "releases": self.counts["releases"],
            "releases_while_reporter_checks_in": self.counts["releases_while_reporter_checks_in"],
            "releases_with_askable_peers": self.counts["releases_with_askable_peers"],
            "heartbeats_found_by_pre_release_sync": sum(
                c.synced_heartbeats for c in self.caches.values()
            ),
            "fetches": self.counts["fetches"],
            "recoveries": self.counts["recoveries"],
            "deliveries": sum(self.recv.record.counts().values()) if self.recv else 0,
            "redeliveries_same_id": sum(
                v - 1 for v in (self.recv.record.counts().values() if self.recv else []) if v > 1
            ),
            "webhook_answers_lost": self.recv.lost_answers if self.recv else 0,
            "sync_timeouts_on_clean_links": self.counts["sync_timeouts_on_clean_links"],
            "max_settle_seconds": round(self.max_settle, 2),
            "settle_polls_with_due_cases": self.counts["settle_polls_with_due_cases"],
            "phase_seconds": {k[6:]: round(v, 1) for k, v in self.timing.items()},
            "invariant_checks_passed": dict(sorted(self.checks.items())),
            "invariant_checks_total": sum(self.checks.values()),
            "orphans_killed": self.counts["orphans_killed"],
            "processes_started": sum(len(n.procs) for n in self.nodes.values()),
            "processes_still_running": sum(
                p.poll() is None for n in self.nodes.values() for p in n.procs
            ),
            "seconds": self.counts["seconds"],
        }
        return out


def audit_check(name: str, data_dir: Path) -> list[inv.Violation]:
    """(f) in process: `velador node audit --data DIR --verify` through click."""
    res = CliRunner().invoke(node_cli, ["audit", "--data", str(data_dir), "--verify"])
    if res.exit_code == 0 and "audit chain ok" in res.output:
        return []
    return [inv.Violation("f", f"{name}: audit --verify: {res.output or res.exception}")]


def run_chaos(s: Settings, say=print, keep: bool = False) -> dict[str, Any]:
    """Run a whole chaos session in a temporary folder; returns the summary. Raises
    ChaosFailure on a violation (after stopping every process and removing the folder)."""
    os.environ.setdefault("VELADOR_INSECURE_FAST_KDF", "1")
    root = Path(tempfile.mkdtemp(prefix="velador-chaos-"))
    h = Harness(s, root, say)
    say(f"chaos: seed {s.seed}, {s.cycles} fault cycles, data in {root}")
    try:
        with h.timed("setup"):
            h.setup()
        h.run()
    except BaseException:  # a violation, or the harness itself broke: either way, the seed
        say(f"chaos: FAILED with seed {s.seed} at step {h.step_no}")
        with contextlib.suppress(Exception):
            say(f"chaos: partial counts {h.summary()}")
        raise
    finally:
        h.close()
        if keep:
            say(f"chaos: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return h.summary()  # after close(): it counts the processes it had to kill
