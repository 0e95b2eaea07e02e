"""The seeded fault schedule and the reporter's script.

Both draw from their own `random.Random` streams, and the number of draws never depends on what
the processes did (only on the harness's own state: which nodes it killed, which partition it
made), so a seed always gives the same schedule. What the processes do inside a step (the order
in which gossip retries hit a flaky link, say) is timing and is not replayed exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

STEP_SIZES = (300, 600, 900, 1200)
"""How far base time moves per step. With every=3600 s this gives 3 to 12 steps per interval."""
JUMP_SIZES = (2 * 86400, 5 * 86400, 30 * 86400)
"""How far one node's clock jumps ahead (far past every + grace, and past every tolerance)."""
HOSTILE_PEER_MODES = ("drip", "stall", "huge", "garbage")
CHECKIN_GAP = 1800
"""The reporter always checks in once this long has passed since the last attempt, so two of
its heartbeats are never more than CHECKIN_GAP + max(STEP_SIZES) = 3000 s < every apart."""


@dataclass
class Plan:
    kills: list[str] = field(default_factory=list)
    crash_restarts: list[str] = field(default_factory=list)
    """Killed and started again in the same step (a crash and an immediate restart)."""
    restarts: list[str] = field(default_factory=list)
    links: dict[tuple[str, str], str] = field(default_factory=dict)
    """New base modes of links (a partition overrides them with 'down' while it lasts)."""
    partition: tuple[frozenset[str], int] | None = None
    """A new partition: one side (the other side is the rest) and how many steps it lasts."""
    skews: dict[str, int] = field(default_factory=dict)
    step: int = 600
    kill_in_checkin: tuple[str, float] | None = None
    """SIGKILL this node this many seconds after the reporter's heartbeat fan-out starts (if
    the node is alive then): a heartbeat may be in its transaction."""
    kill_in_advance: tuple[str, float] | None = None
    """SIGKILL this node this many seconds after it read its new clock: it may be sweeping,
    syncing with peers before a release, releasing, or delivering."""
    hostile_case: bool = False
    """A stranger registers a case at some nodes naming fake nodes that drip (a tarpit) and
    subscribes a webhook to the tarpit: it must not delay any other case's release."""
    jump: tuple[str, int, int] | None = None
    """(node, seconds, steps): this node's clock jumps that far ahead for that many steps, then
    the node is restarted on the right time. A node whose clock is ahead of its reachable peers
    must not release a case whose reporter checks in."""

    @property
    def faults(self) -> int:
        return (
            len(self.kills)
            + len(self.crash_restarts)
            + len(self.restarts)
            + len(self.links)
            + (self.partition is not None)
            + len(self.skews)
            + (self.kill_in_checkin is not None)
            + (self.kill_in_advance is not None)
            + self.hostile_case
            + (self.jump is not None)
        )


class Planner:
    def __init__(
        self,
        seed: int,
        nodes: list[str],
        clients: list[str],
        max_skew: int,
        hostile_rate: float = 0.15,
    ) -> None:
        self.rng = random.Random(f"{seed}:faults")
        self.hostile_rate = hostile_rate
        self.nodes = nodes
        self.clients = clients
        self.max_skew = max_skew

    def plan(
        self, alive: set[str], partitioned: bool, must_start_all: bool, jumped: bool = False
    ) -> Plan:
        r = self.rng
        p = Plan()
        up = [n for n in self.nodes if n in alive]
        if up and r.random() < 0.22:
            p.kills.append(r.choice(up))
        if up and r.random() < 0.08:
            victim = r.choice(up)
            if victim not in p.kills:
                p.crash_restarts.append(victim)
        for n in self.nodes:
            if n not in alive and r.random() < 0.45:
                p.restarts.append(n)
        if must_start_all:  # a new case is registered at every node this step
            p.restarts = [n for n in self.nodes if n not in alive or n in p.kills]
        if not partitioned and r.random() < 0.15:
            k = r.randint(1, len(self.nodes) - 1)
            side = frozenset(r.sample(self.nodes, k))
            p.partition = (side, r.randint(1, 8))
        for src in self.nodes:
            for dst in self.nodes:
                if src != dst and r.random() < 0.04:
                    p.links[(src, dst)] = r.choice(("up", "up", "slow", "flaky"))
        # Adversarial faults (drawn every step, so the stream never depends on the processes).
        roll_peer, roll_case, roll_jump = r.random(), r.random(), r.random()
        src, dst = r.sample(self.nodes, 2)
        hostile_mode = r.choice(HOSTILE_PEER_MODES)
        jump = (r.choice(self.nodes), r.choice(JUMP_SIZES), r.randint(1, 3))
        if roll_peer < self.hostile_rate:
            p.links[(src, dst)] = hostile_mode
        if roll_case < self.hostile_rate / 2:
            p.hostile_case = True
        if roll_jump < self.hostile_rate / 3 and not jumped and not must_start_all:
            p.jump = jump
        for src in self.clients:
            for dst in self.nodes:
                if r.random() < 0.04:
                    p.links[(src, dst)] = r.choice(("up", "slow", "flaky", "down"))
        if r.random() < 0.3:
            p.skews[r.choice(self.nodes)] = r.randint(-self.max_skew, self.max_skew)
        if r.random() < 0.12:
            p.kill_in_checkin = (r.choice(self.nodes), r.uniform(0.0, 0.08))
        if r.random() < 0.12:
            p.kill_in_advance = (r.choice(self.nodes), r.uniform(0.0, 0.5))
        if p.faults == 0:  # every cycle injects at least one fault
            p.skews[r.choice(self.nodes)] = r.randint(-self.max_skew, self.max_skew)
        p.step = r.choice(STEP_SIZES)
        return p


@dataclass
class Reach:
    """Which nodes one heartbeat can reach, as link modes for reporter->node."""

    modes: dict[str, str]

    @property
    def reached(self) -> list[str]:
        return [n for n, m in self.modes.items() if m in ("up", "slow")]


class Script:
    """The reporter: checks in on time (sometimes reaching only some nodes) for a while, then
    stops for good."""

    def __init__(self, seed: int, nodes: list[str]) -> None:
        self.rng = random.Random(f"{seed}:reporter")
        self.nodes = nodes

    def lifetime(self) -> int:
        """How many steps the reporter of a new case keeps checking in."""
        return self.rng.randint(3, 16)

    def duress(self, rate: float) -> bool:
        """Whether this check-in is made with the duress passphrase (policy duress = alert)."""
        return self.rng.random() < rate

    def checks_in(self, since_last: int) -> bool:
        roll = self.rng.random()  # drawn every time, so the stream does not depend on the gap
        return since_last >= CHECKIN_GAP or roll < 0.5

    def reach(self) -> Reach:
        r = self.rng
        u = r.random()
        order = r.sample(self.nodes, len(self.nodes))
        k = r.randint(1, len(self.nodes) - 1)
        bad = [r.choice(("down", "flaky")) for _ in self.nodes]
        good = [r.choice(("up", "up", "slow")) for _ in self.nodes]
        if u < 0.55:  # every node
            return Reach({n: good[i] for i, n in enumerate(self.nodes)})
        if u < 0.88:  # only some nodes
            reached = set(order[:k])
            return Reach({n: good[i] if n in reached else bad[i] for i, n in enumerate(self.nodes)})
        return Reach({n: bad[i] for i, n in enumerate(self.nodes)})  # none
