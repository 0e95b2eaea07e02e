"""One full case life with marker strings, recording every byte Velador writes (issue 5).

`run_life(root, bucket)` plays the whole story with real `velador` commands (in process, through
click and the real error handler, as cli/demo.py does) and three real `velador node serve`
processes (2 of 3) with an aiosmtpd server and a webhook receiver on loopback. It returns a
`Life` with the markers, every recorded byte stream (command output, logs of the in-process
commands, node stdout/stderr, e-mails, webhook bodies, argv of every process) and the folders to
scan; tests/leak/scan.py searches them.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import tomli_w

from tests.conftest import free_port, wait_http
from tests.leak.scan import category_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PEOPLE = ("reporter", "outlet1", "outlet2", "editor")
DEADLINE = 40.0  # no single wait may last longer than this, even on a loaded machine


def make_markers() -> dict[str, str]:
    """Distinct random markers; two carry non-ASCII letters so NFC/NFD forms are searched."""
    kinds = [
        "content",
        "content-nested",
        "filename",
        "dirname",
        "instructions",
        "casename",
        "reason",
        "reason-rejected",
        "passphrase-duress",
        "passphrase-wrong",
        *(f"passphrase-{who}" for who in PEOPLE),
        *(f"name-{who}" for who in PEOPLE),
        *(f"hook-{who}" for who in PEOPLE),
    ]
    marks = {k: f"LEAKMARK-{k}-{secrets.token_hex(6)}" for k in kinds}
    for who in PEOPLE:  # subscription addresses, lowercase as an address is written
        marks[f"email-{who}"] = f"leakmark-email-{who}-{secrets.token_hex(6)}@leak.test"
    # Composed (NFC) on purpose: macOS-style NFD copies are searched for as well.
    marks["filename-unicode"] = unicodedata.normalize(
        "NFC", f"LEAKMARK-ufilename-\u00f1and\u00fa-{secrets.token_hex(6)}"
    )
    marks["content-unicode"] = unicodedata.normalize(
        "NFC", f"LEAKMARK-ucontent-Se\u00f1ora-{secrets.token_hex(6)}"
    )
    return marks


@dataclass
class Stream:
    """Bytes Velador produced outside the scanned folders: (category, label, data)."""

    category: str
    label: str
    data: bytes


@dataclass
class Life:
    root: Path
    marks: dict[str, str]
    streams: list[Stream] = field(default_factory=list)
    bucket: str = ""
    prefix: str = ""
    case_id: str = ""
    recovered: Path | None = None
    source: Path | None = None
    duration: float = 0.0


# --- receivers ---------------------------------------------------------------------------------


class RawMailbox:
    """aiosmtpd handler keeping every message's raw bytes."""

    def __init__(self) -> None:
        self.raw: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.raw.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


class RawHooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, bytes]] = []  # path, raw headers, raw body
        self.lock = threading.Lock()

    def events(self, path: str) -> list[str]:
        with self.lock:
            out = []
            for p, headers, _ in self.calls:
                if p == path:
                    for line in headers.decode("latin-1").splitlines():
                        if line.lower().startswith("velador-event:"):
                            out.append(line.split(":", 1)[1].strip())
            return out


def decoded_mail(raw: bytes) -> bytes:
    """Headers (RFC 2047 words decoded) and every part's payload after its transfer encoding
    (quoted-printable can split a marker across a soft line break; base64 is searched raw too)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = [f"{k}: {v}".encode() for k, v in msg.items()]
    for part in msg.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out.append(payload)
    return b"\n".join(out)


def start_hooks(hooks: RawHooks) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(n)
            with hooks.lock:
                hooks.calls.append((self.path, bytes(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- process argv ------------------------------------------------------------------------------


class ArgvRecorder:
    """Every process started while the life runs: the argv handed to subprocess.Popen in this
    process, and /proc/<pid>/cmdline of every descendant seen by a sampler thread (nodes, their
    children, deposit workers)."""

    def __init__(self) -> None:
        self.popen_args: list[bytes] = []
        self.cmdlines: dict[int, bytes] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.me = os.getpid()

    def popen_class(self) -> type[subprocess.Popen[Any]]:
        recorder = self

        class RecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
            def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
                items = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
                recorder.popen_args.append(b"\0".join(os.fsencode(x) for x in items))
                super().__init__(args, *a, **kw)

        return RecordingPopen

    def _descendants(self) -> list[int]:
        parent: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parent[int(entry)] = ppid
        out = []
        for pid in parent:
            p, seen = pid, 0
            while p in parent and seen < 64:
                p, seen = parent[p], seen + 1
                if p == self.me:
                    out.append(pid)
                    break
        return out

    def sample(self) -> None:
        for pid in self._descendants():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if cmd:
                    self.cmdlines[pid] = cmd

    def _run(self) -> None:
        while not self.stop.wait(0.25):
            self.sample()


# --- the velador command, in process -------------------------------------------------------------


class Runner:
    def __init__(self, life: Life, homes: dict[str, Path], passes: dict[str, str]) -> None:
        self.life = life
        self.homes = homes
        self.passes = passes
        self.n = 0

    def __call__(
        self, who: str, *args: Any, passphrase: str | None = None, check: bool = True
    ) -> str:
        """Run `velador --home HOME ARGS` as `who`; record its argv, stdout and stderr."""
        from cli.main import cli, report_error
        from vault.errors import VeladorError

        argv = ["--home", str(self.homes[who]), *map(str, args)]
        self.n += 1
        label = f"{self.n:02d} {who}: velador {' '.join(str(a)[:24] for a in args[:2])}"
        self.life.streams.append(
            Stream(f"argv-cli-{who}", label, "\0".join(argv).encode("utf-8", "surrogateescape"))
        )
        old = os.environ.pop("VELADOR_PASSPHRASE", None)
        pw = passphrase if passphrase is not None else self.passes.get(who)
        if pw is not None:
            os.environ["VELADOR_PASSPHRASE"] = pw
        out, err = io.StringIO(), io.StringIO()
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    cli.main(argv, "velador", standalone_mode=False)
                except VeladorError as exc:
                    code = report_error(exc)
                except click.ClickException as exc:
                    exc.show()
                    code = exc.exit_code
        finally:
            os.environ.pop("VELADOR_PASSPHRASE", None)
            if old is not None:
                os.environ["VELADOR_PASSPHRASE"] = old
        self.life.streams.append(
            Stream(f"output-{who}", label + " [stdout]", out.getvalue().encode())
        )
        self.life.streams.append(
            Stream(f"output-{who}", label + " [stderr]", err.getvalue().encode())
        )
        if check and code != 0:
            raise AssertionError(f"{label} exited {code}: {err.getvalue()}")
        return out.getvalue()


# --- nodes ---------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.dir / 'node.db'}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


def wait_until(pred: Any, what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stop_node(node: Node) -> None:
    if node.proc is None:
        return
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(60)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(30)
    node.proc = None


def live_copy(life: Life, tag: str) -> None:
    """Read every file under the root now, while the nodes run: SQLite -wal/-shm files and
    temporary files that are gone by the end are scanned too (as streams of their category)."""
    for path in sorted(life.root.rglob("*")):
        category = category_of(path.relative_to(life.root))
        if category is None:
            continue
        with contextlib.suppress(OSError):  # a file may vanish between listing and reading
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 64 << 20:
                rel = path.relative_to(life.root)
                life.streams.append(Stream(category, f"{rel} [live {tag}]", path.read_bytes()))


# --- the story -----------------------------------------------------------------------------------


def write_tree(src: Path, m: dict[str, str]) -> tuple[Path, Path]:
    """The reporter's investigation: markers in file contents, file names and folder names."""
    tree = src / "tree"
    deep = tree / m["dirname"] / "sub"
    deep.mkdir(parents=True)
    (tree / f"{m['filename']}.txt").write_text(f"notes: {m['content']}\n", encoding="utf-8")
    (deep / "nested.md").write_text(f"# {m['content-nested']}\n" * 3, encoding="utf-8")
    (tree / f"{m['filename-unicode']}.txt").write_text(
        f"testimonio: {m['content-unicode']}\n", encoding="utf-8"
    )
    (tree / "big.bin").write_bytes(os.urandom(300_000) + m["content"].encode() + os.urandom(10))
    note = src / "instructions.txt"
    note.write_text(f"Publish first. {m['instructions']}\n", encoding="utf-8")
    return tree, note


def run_life(root: Path, bucket: str) -> Life:
    """Play one case life under `root`; every folder Velador may write is inside it."""
    from vault.clock import SystemClock
    from vault.identity import load_card, unlock_identity
    from vault.nodeproto.client import NodeClient

    t0 = time.monotonic()
    m = make_markers()
    life = Life(root, m, bucket=bucket, prefix="vault")
    homes = {who: root / "homes" / who for who in PEOPLE}
    for h in homes.values():
        h.mkdir(parents=True)
    passes = {who: m[f"passphrase-{who}"] for who in PEOPLE}
    v = Runner(life, homes | {"operator": root / "homes" / "operator"}, passes)
    captured = root / "captured"
    captured.mkdir()
    stub = root / "bin" / "notify-send"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    os.environ["PATH"] = f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '')}"

    box, hooks = RawMailbox(), RawHooks()
    from aiosmtpd.controller import Controller

    smtp = Controller(box, hostname="127.0.0.1", port=free_port())
    smtp.start()
    hook_server = start_hooks(hooks)
    hook_url = f"http://127.0.0.1:{hook_server.server_port}"
    argv = ArgvRecorder()
    argv.thread.start()
    old_popen = subprocess.Popen
    subprocess.Popen = argv.popen_class()  # type: ignore[misc]
    log_buf = io.StringIO()
    handler = logging.StreamHandler(log_buf)
    handler.setLevel(logging.DEBUG)
    # The test's own SMTP receiver (aiosmtpd, logger "mail.log") logs the addresses it receives
    # for; that is not Velador writing, so its records are left out.
    handler.addFilter(lambda r: not r.name.startswith(("mail.log", "aiosmtpd")))
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)
    nodes: list[Node] = []
    # Anything written straight to file descriptors 1 and 2 (by a library, or by a child such as
    # a deposit worker that inherits them) lands in fd/ and is scanned.
    (root / "fd").mkdir()
    saved_fds = (os.dup(1), os.dup(2))
    for fd, name in ((1, "stdout"), (2, "stderr")):
        with open(root / "fd" / name, "wb") as f:
            os.dup2(f.fileno(), fd)
    try:
        # Given three escrow nodes with SMTP and operator notifications configured.
        for i in range(3):
            name = f"node-{chr(97 + i)}"
            node = Node(name, root / "nodes" / name, free_port())
            v("operator", "node", "init", "--data", node.dir, "--name", name, "--url", node.url,
              "--port", node.port, "--registration", "open")  # fmt: skip
            cfg_path = node.dir / "node.toml"
            doc = tomllib.loads(cfg_path.read_text())
            doc["registration"]["allow_private_targets"] = True  # the loopback webhook receiver
            doc["smtp"] = {
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "plain",
                "from": f"{name}@velador.test",
            }
            doc["notify"] = {
                "operator_email": f"operator-{name}@velador.test",
                "operator_webhook": f"{hook_url}/operator-{name}",
            }
            cfg_path.write_text(tomli_w.dumps(doc))
            out = open(captured / f"{name}.stdout", "wb")  # noqa: SIM115 - closed below
            err = open(captured / f"{name}.stderr", "wb")  # noqa: SIM115 - closed below
            try:
                node.proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "cli.node_cmds",
                        "serve",
                        "--data",
                        str(node.dir),
                        "--tick",
                        "0.2",
                        "--log-level",
                        "debug",
                    ],
                    cwd=REPO,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                    stdout=out,
                    stderr=err,
                )
            finally:
                out.close()
                err.close()
            nodes.append(node)

        # And a reporter (with a duress passphrase), two outlets and an editor.
        v("reporter", "id", "new", "--name", m["name-reporter"])
        os.environ["VELADOR_DURESS_PASSPHRASE"] = m["passphrase-duress"]
        try:
            v("reporter", "id", "duress")
        finally:
            del os.environ["VELADOR_DURESS_PASSPHRASE"]
        v("outlet1", "id", "new", "--name", m["name-outlet1"], "--role", "outlet")
        v("outlet2", "id", "new", "--name", m["name-outlet2"], "--role", "outlet")
        v("editor", "id", "new", "--name", m["name-editor"], "--role", "editor")
        for who in ("outlet1", "outlet2", "editor"):
            v("reporter", "contact", "add", v(who, "id", "card").strip(), "--alias", who)
        reporter_card = v("reporter", "id", "card").strip()
        for node in nodes:
            card = v("operator", "node", "card", "--data", node.dir).strip()
            for who in PEOPLE:
                v(who, "contact", "add", card, "--alias", node.name)
        for who in ("outlet1", "outlet2", "editor"):
            v(who, "contact", "add", reporter_card, "--alias", "reporter")
        for node in nodes:
            wait_http(node.url + "/v1/health", DEADLINE)
        argv.sample()

        # When the reporter creates a case named by a marker, with a folder store and S3.
        info = v(
            "reporter", "case", "create", m["casename"],
            *[a for n in nodes for a in ("--node", n.name)], "--threshold", "2",
            "--recipient", "outlet1", "--recipient", "outlet2",
            "--editor", "editor", "--editor-quorum", "1", "--objection-window", "1h",
            "--every", "1h", "--grace", "1h", "--remind", "3599s",
            "--store", f"file://{root / 'stores' / 'folder'}",
            "--store", f"s3://{bucket}/{life.prefix}",
        )  # fmt: skip
        import json

        life.case_id = json.loads(v("reporter", "case", "show", m["casename"], "--json"))["case_id"]
        assert life.case_id, info
        case_card = v("reporter", "case", "card", m["casename"]).strip().splitlines()[-1]

        # Everyone registers an e-mail address and a webhook at every node.
        for who in PEOPLE:
            ident = unlock_identity(homes[who], passes[who])
            for node in nodes:
                c = NodeClient(load_card(node.dir), ident, SystemClock(), 20.0)
                try:
                    c.subscribe(life.case_id, "email", m[f"email-{who}"])
                    c.subscribe(life.case_id, "webhook", f"{hook_url}/{who}/{m[f'hook-{who}']}")
                finally:
                    c.close()

        # The reporter deposits a tree with markers in names and contents, and instructions.
        src = root / "src"
        tree, note = write_tree(src, m)
        life.source = src
        v("reporter", "deposit", m["casename"], tree, "--instructions", note)

        # Check-ins: a normal one, then one with the duress passphrase (editors alerted). The
        # reminder is due one second after a check-in, so the reporter's agent shows it (as a
        # desktop notification too: a stub notify-send on PATH that does nothing).
        v("reporter", "checkin", m["casename"])
        time.sleep(1.2)
        v("reporter", "agent", "--once")
        v("reporter", "checkin", m["casename"], passphrase=m["passphrase-duress"])
        wait_until(
            lambda: (
                len([e for e in hooks.events(f"/editor/{m['hook-editor']}") if e == "duress"]) >= 3
            ),
            "the duress alert from every node",
        )
        live_copy(life, "after check-ins")

        # A captor tries a wrong passphrase: refused, and written nowhere.
        v("reporter", "checkin", m["casename"], passphrase=m["passphrase-wrong"], check=False)
        assert "error" in life.streams[-1].data.decode(), "a wrong passphrase was accepted"

        # The editor asks for a release with a marker reason, from a file the editor wrote (kept
        # beside the reporter's sources: outside everything Velador writes), so the reason is in
        # no argv; the reporter releases at once.
        reason_file = src / "editor-reason.txt"
        reason_file.write_text(m["reason"], encoding="utf-8")
        v("editor", "release", "request", life.case_id, "--reason-file", reason_file, "--yes")
        # A reason over the 1,000-character limit, sent past the CLI's own check, is refused by
        # every node; what a node does with a refused body is part of the scan.
        from vault.errors import VeladorError

        editor = unlock_identity(homes["editor"], passes["editor"])
        for node in nodes:
            c = NodeClient(load_card(node.dir), editor, SystemClock(), 20.0)
            try:
                with contextlib.suppress(VeladorError):
                    c.release_request(life.case_id, m["reason-rejected"] + " x" * 600)
                    raise AssertionError(f"{node.name} accepted a 1,200-character reason")
            finally:
                c.close()
        v("reporter", "release", "now", m["casename"], "--yes")
        for node in nodes:
            wait_until(
                lambda node=node: (
                    node.query("SELECT state FROM cases WHERE case_id = ?", life.case_id)
                    == [("RELEASED",)]
                ),
                f"{node.name} to release",
            )
        for node in nodes:
            wait_until(
                lambda node=node: (
                    node.query(
                        "SELECT count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL"
                    )
                    == [(0,)]
                ),
                f"{node.name}'s outbox to drain",
            )
            # The request reached every node (it is in the audit chain, without its reason).
            assert node.query("SELECT count(*) FROM audit WHERE event = 'release_request'") == [
                (1,)
            ], node.name
        argv.sample()
        live_copy(life, "after release")

        # The operators look at their nodes.
        for node in nodes:
            v("operator", "node", "status", "--data", node.dir, "--json")
            v("operator", "node", "audit", "--data", node.dir, "--verify")

        # Then the outlets read their inbox and recover into their output folders, one with
        # the case card, one with the case id alone (asking the nodes in its contacts).
        v("outlet1", "inbox")
        v("editor", "inbox")
        life.recovered = root / "out" / "outlet1"
        v("outlet1", "recover", case_card, "--out", life.recovered)
        v("outlet2", "recover", life.case_id, "--out", root / "out" / "outlet2")
        for who in ("outlet1", "outlet2"):
            got = root / "out" / who / "tree" / f"{m['filename']}.txt"
            assert m["content"] in got.read_text(encoding="utf-8"), f"{who} did not recover"
        argv.sample()
        live_copy(life, "after recovery")
        # The audit chain alone (docs/protocol.md §6: never an address, a reason text or
        # anything sealed), apart from the rest of the database the node keeps by design.
        for node in nodes:
            rows = node.query("SELECT seq, time, case_id, event, detail FROM audit ORDER BY seq")
            text = "\n".join(repr(tuple(r)) for r in rows).encode()
            life.streams.append(Stream("node-audit", f"{node.name} audit table", text))
    finally:
        for fd, saved in zip((1, 2), saved_fds, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        subprocess.Popen = old_popen  # type: ignore[misc]
        for node in nodes:
            with contextlib.suppress(Exception):  # keep stopping the others
                stop_node(node)
        argv.stop.set()
        argv.thread.join(5)
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
        hook_server.shutdown()
        hook_server.server_close()
        smtp.stop()

    life.streams.append(Stream("cli-log", "logging records of the in-process commands",
                               log_buf.getvalue().encode()))  # fmt: skip
    for i, (rcpt, raw) in enumerate(box.raw):
        label = f"mail {i} to {','.join(rcpt)}"
        life.streams.append(Stream("mail", label, raw))
        life.streams.append(Stream("mail", label + " [decoded]", decoded_mail(raw)))
    for i, (path, headers, body) in enumerate(hooks.calls):
        life.streams.append(Stream("webhook", f"webhook {i} {path}", headers + b"\r\n" + body))
    for i, args in enumerate(argv.popen_args):
        life.streams.append(Stream("argv-process", f"Popen {i}: {args[:120]!r}", args))
    for pid, cmd in argv.cmdlines.items():
        life.streams.append(Stream("argv-process", f"/proc/{pid}/cmdline", cmd))
    life.duration = time.monotonic() - t0
    return life
