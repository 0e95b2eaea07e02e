"""`make demo`: the whole story on this machine, on loopback, in a temp folder it removes.

Five partner outlets run escrow nodes (`velador node serve` subprocesses on free loopback ports,
second-scale intervals). Ana, a reporter, arms a case across them (3 of 5), names two recipient
outlets and one editor, and deposits her investigation into a folder store. Her check-ins keep
the case armed; an editor's false alarm is cancelled by her objection; one node goes down; her
check-ins stop; the nodes remind, warn, and release; an outlet recovers from the four live nodes
and the demo proves the files byte-identical. Every step is a real `velador` command, printed as
it runs. The node processes are stopped in a `finally`, also on Ctrl-C or an error.
"""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx

from vault.errors import VeladorError

from . import i18n
from .i18n import _

VELADOR = [sys.executable, "-m", "cli.main"]
NODES = 5
THRESHOLD = 3
EVERY, GRACE, REMIND = 8, 5, 3  # seconds: check in every 8 s, release 5 s after a miss
PACE = 4.0  # Ana checks in every 4 s, well inside each interval even on a loaded machine
STEP_DEADLINE = 30.0  # no wait in the demo may last longer than this


class DemoFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Any, what: str, deadline: float = STEP_DEADLINE, every: float = 0.2) -> Any:
    """Poll `pred` until it returns something truthy, with a deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise DemoFailed(_("timed out waiting for %(what)s") % {"what": what})


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.start = time.monotonic()
        self.timeline: list[str] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Demo only: libsodium's minimum Argon2id cost, so identities take milliseconds. The
        # passphrase comes from the environment, never from argv (see cli/context.py).
        (root / "tmp").mkdir()
        os.environ.update(
            VELADOR_PASSPHRASE="demo passphrase",  # noqa: S106 - a throwaway demo identity
            VELADOR_INSECURE_FAST_KDF="1",
            PYTHONUNBUFFERED="1",
            TMPDIR=str(root / "tmp"),
        )
        self.env = dict(os.environ)
        # The nodes run from the temp folder: make them import this same checkout, not whatever
        # copy of velador the interpreter finds first (another checkout's editable install).
        repo = str(Path(__file__).resolve().parents[1])
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (repo, self.env.get("PYTHONPATH", "")) if p
        )

    # --- output ------------------------------------------------------------------------------

    def t(self) -> float:
        return time.monotonic() - self.start

    def step(self, text: str) -> None:
        self.timeline.append(f"{self.t():6.1f}s  {text}")
        print(f"\n== {text}", flush=True)

    def mark(self, text: str) -> None:
        self.timeline.append(f"{self.t():6.1f}s    {text}")
        print(f"   ({text})", flush=True)

    def v(self, who: str, *args: str, check: bool = True, show: bool = True) -> str:
        """Run one real `velador` command as `who` (their own home folder) and print it.

        The command runs in this process through click, exactly as `velador` parses and runs
        it (errors print through the same handler): a new interpreter per command would cost
        seconds on a loaded machine. Only the nodes are separate processes."""
        from cli.main import cli, report_error

        shown = " ".join(_short(a) for a in args)
        if show:
            print(f"$ velador --home {who} {shown}", flush=True)
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(["--home", str(self.root / who), *args], "velador", standalone_mode=False)
            except VeladorError as exc:
                code = report_error(exc)
            except click.exceptions.Abort:  # how click reports Ctrl-C inside a command
                raise KeyboardInterrupt from None
            except click.ClickException as exc:
                exc.show()
                code = exc.exit_code
        text = (out.getvalue() + err.getvalue()).strip()
        if text and show:
            print("  " + text.replace("\n", "\n  "), flush=True)
        if check and code != 0:
            if not show:
                print(f"$ velador --home {who} {shown}\n  {text}", flush=True)
            raise DemoFailed(
                _("step failed (exit %(code)s): velador %(command)s")
                % {"code": code, "command": shown}
            )
        return out.getvalue()

    def quiet(self, who: str, *args: str) -> str:
        """The same, unprinted: for repetitive set-up steps."""
        return self.v(who, *args, show=False)

    # --- nodes -------------------------------------------------------------------------------

    def init_nodes(self) -> list[tuple[str, str]]:
        """`velador node init` for five outlets; returns (name, url)."""
        made = []
        for i in range(1, NODES + 1):
            name, port = f"nodo-{i}", free_port()
            url = f"http://127.0.0.1:{port}"
            args = ["node", "init", "--data", str(self.root / "nodes" / name)]
            args += ["--name", name, "--url", url, "--port", str(port)]
            shown = f"--data nodes/{name} --name {name} --url {url} --port {port}"
            print(f"$ velador node init {shown}", flush=True)
            self.quiet("operators", *args)  # in this process: five interpreters cost seconds
            # All five run on this machine, so they must be allowed to reach loopback peers.
            toml = self.root / "nodes" / name / "node.toml"
            toml.write_text(
                toml.read_text().replace(
                    "allow_private_targets = false", 'allowed_networks = ["127.0.0.0/8"]'
                )
            )
            made.append((name, url))
        print('   (node.toml: [registration] allowed_networks = ["127.0.0.0/8"])', flush=True)
        return made

    def serve(self, name: str, url: str) -> None:
        data = self.root / "nodes" / name
        log = open(data / "serve.log", "ab")  # noqa: SIM115 - closed with the process
        args = ["node", "serve", "--data", str(data), "--tick", "0.2", "--log-level", "warning"]
        print(f"$ velador {' '.join(args[:2])} --data nodes/{name} --tick 0.2 &", flush=True)
        self.procs[name] = subprocess.Popen(
            [*VELADOR, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            preexec_fn=_die_with_parent,  # no threads run at this point
        )
        log.close()

    def wait_healthy(self, url: str) -> None:
        def up() -> bool:
            try:
                return httpx.get(url + "/v1/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, _("%(url)s to answer") % {"url": url}, every=0.05)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):  # keep stopping the others
                self.stop(name)

    # --- what the reporter sees ------------------------------------------------------------------

    def node_states(self) -> dict[str, str]:
        out = self.quiet("ana", "status", "puerto", "--json", "--timeout", "2")
        case = json.loads(out)["cases"][0]
        rows = case.get("nodes") or case.get("results") or []
        return {r["node"]: r.get("state") or "unreachable" for r in rows}

    def wait_states(self, want: str, at_least: int, what: str) -> dict[str, str]:
        def enough() -> dict[str, str] | None:
            states = self.node_states()
            return states if sum(1 for s in states.values() if s == want) >= at_least else None

        return wait_until(enough, what, every=0.3)


def _die_with_parent() -> None:
    """Linux: a node gets SIGTERM if the demo itself is killed (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere, the finally in main() is the only clean-up


def _short(arg: str) -> str:
    if arg.startswith(("velador:card:", "velador:case:")):
        return f"'{arg[:24]}…'"
    return arg if " " not in arg else f"'{arg}'"


def write_investigation(root: Path) -> tuple[Path, Path]:
    inv = root / "investigacion-puerto"
    (inv / "fuentes").mkdir(parents=True)
    (inv / "notas.md").write_text(
        "# Puerto\nContratos inflados, 2019-2024. Ver fuentes/.\n", encoding="utf-8"
    )
    (inv / "fuentes" / "entrevista-ñ.txt").write_text("Testimonio (anonimizado).\n", "utf-8")
    (inv / "fuentes" / "contratos.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (inv / "vacío.txt").write_bytes(b"")
    note = root / "instrucciones.txt"
    note.write_text(
        "Publicar notas.md primero. Proteger a las fuentes: no publicar nombres.\n", "utf-8"
    )
    return inv, note


def identical(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(identical(a / d, b / d) for d in cmp.subdirs)


def story(d: Demo) -> None:
    root = d.root
    d.step(
        _("Five partner outlets start escrow nodes (%(k)d of %(n)d will be needed), tick %(tick)ss")
        % {"k": THRESHOLD, "n": NODES, "tick": 0.2}
    )
    nodes = d.init_nodes()
    for name, url in nodes:
        d.serve(name, url)
    pids = ", ".join(f"{n} pid {p.pid}" for n, p in d.procs.items())
    print(_("   node pids: %(pids)s") % {"pids": pids}, flush=True)

    d.step(_("Ana (reporter), two recipient outlets and an editor make identities"))
    d.v("ana", "id", "new", "--name", "Ana Reportera")
    d.v("diario", "id", "new", "--name", "El Diario del Norte", "--role", "outlet")
    d.v("semanario", "id", "new", "--name", "Semanario Sur", "--role", "outlet")
    d.v("editora", "id", "new", "--name", "Editora de Ana", "--role", "editor")

    d.step(_("They exchange contact cards (and would compare fingerprints aloud)"))
    cards = {who: d.quiet(who, "id", "card").strip() for who in ("diario", "semanario", "editora")}
    ana_card = d.quiet("ana", "id", "card").strip()
    node_cards = {name: _node_card(d, name) for name, _ in nodes}
    for who, card in cards.items():
        d.v("ana", "contact", "add", card, "--alias", who)
    for i, (name, card) in enumerate(node_cards.items()):
        if i == 0:
            d.v("ana", "contact", "add", card, "--alias", name)
        else:
            d.quiet("ana", "contact", "add", card, "--alias", name)
    print(_("   (and the other four node cards the same way)"), flush=True)

    for who in ("diario", "semanario", "editora"):  # the same on the other three machines
        d.quiet(who, "contact", "add", ana_card, "--alias", "ana")
        for name, card in node_cards.items():
            d.quiet(who, "contact", "add", card, "--alias", name)
    print(_("   (the outlets and the editor added Ana's card and the five node cards)"), flush=True)

    for _name, url in nodes:  # they started in the background meanwhile
        d.wait_healthy(url)
    d.mark(_("%(n)d nodes answer on loopback") % {"n": NODES})

    d.step(_("The node operators admit Ana's key (registration is closed by default)"))
    from vault.cards import parse_card

    ana_fp = parse_card(ana_card).fingerprint
    for i, (name, _url) in enumerate(nodes):
        args = ["node", "admit", "--data", str(root / "nodes" / name), ana_fp]
        if i == 0:
            print(f"$ velador node admit --data nodes/{name} {ana_fp}", flush=True)
        d.quiet("operators", *args)
    print(_("   (each operator checked the fingerprint with Ana over a call first)"), flush=True)

    d.step(
        _(
            "Ana creates the case: every %(every)ds, grace %(grace)ds, %(k)d of %(n)d nodes, "
            "2 outlets"
        )
        % {"every": EVERY, "grace": GRACE, "k": THRESHOLD, "n": NODES}
    )
    store = f"file://{root / 'store'}"
    node_args = [a for name, _url in nodes for a in ("--node", name)]
    d.v(
        "ana", "case", "create", "puerto", *node_args, "--threshold", str(THRESHOLD),
        "--recipient", "diario", "--recipient", "semanario",
        "--editor", "editora", "--editor-quorum", "1", "--objection-window", "30s",
        "--every", f"{EVERY}s", "--grace", f"{GRACE}s", "--remind", f"{REMIND}s",
        "--store", store,
    )  # fmt: skip
    armed_at = time.monotonic()
    print("$ velador --home ana case card puerto", flush=True)
    case_card = d.quiet("ana", "case", "card", "puerto").strip().splitlines()[-1]
    case_id = json.loads(d.quiet("ana", "case", "show", "puerto", "--json"))["case_id"]
    print(
        _("   Ana sends the case card to both outlets: %(card)s") % {"card": _short(case_card)},
        flush=True,
    )

    d.step(_("Ana deposits her investigation with instructions for the outlets"))
    inv, note = write_investigation(root)
    d.v("ana", "deposit", "puerto", str(inv), "--instructions", str(note))

    d.step(
        _("Ana's check-ins keep the case armed past its first %(every)ds deadline")
        % {"every": EVERY}
    )
    first = time.monotonic()
    d.v("ana", "checkin", "puerto")
    print(
        "\n" + _("   A false alarm: the editor asks for a release; Ana objects inside the window")
    )
    why = root / "motivo.txt"  # the reason goes in a file, never on the command line
    why.write_text("Ana no llegó a la reunión\n", encoding="utf-8")
    d.v("editora", "release", "request", case_id, "--reason-file", str(why), "--yes")
    d.v("ana", "release", "object", "puerto")
    d.mark(_("editor's release request cancelled by Ana's objection"))
    for i in (1, 2):
        time.sleep(max(0.0, first + i * PACE - time.monotonic()))  # the story's pace
        d.v("ana", "checkin", "puerto")
    # Look only once the deadline the case was armed with has passed.
    time.sleep(max(0.0, armed_at + EVERY + 0.5 - time.monotonic()))
    states = d.node_states()
    watching = sum(s in ("ARMED", "REMINDED") for s in states.values())
    d.mark(
        _("%(watching)d of %(n)d nodes armed %(seconds).0fs after arming")
        % {"watching": watching, "n": NODES, "seconds": time.monotonic() - armed_at}
    )
    if watching != NODES:
        raise DemoFailed(_("the case is not armed everywhere: %(states)s") % {"states": states})

    d.step(_("nodo-5 goes down (its operator's server is seized)"))
    d.stop("nodo-5")
    d.mark(_("nodo-5 stopped"))

    d.step(_("Ana checks in one last time; then her check-ins stop"))
    d.v("ana", "checkin", "puerto", "--timeout", "2", check=False)
    d.mark(_("last check-in"))

    d.step(_("The nodes remind Ana, then warn her and the editor, then release"))
    d.wait_states("REMINDED", 1, _("a reminder"))
    d.mark(_("reminder sent to Ana"))
    d.v("ana", "inbox", "--timeout", "2", check=False)
    d.wait_states("OVERDUE", 1, _("the deadline to pass"))
    d.mark(_("OVERDUE: Ana warned, editor alerted"))
    d.v("editora", "inbox", "--timeout", "2", check=False)
    states = d.wait_states("RELEASED", NODES - 1, _("the release"))
    d.mark(_("RELEASED at %(n)d live nodes") % {"n": sum(s == "RELEASED" for s in states.values())})
    d.v("diario", "inbox", "--timeout", "2", check=False)

    d.step(_("El Diario recovers with the case card; the dead node is named and skipped"))
    out = root / "recuperado-diario"
    key = root / "caso.key"
    d.v("diario", "recover", case_card, "--out", str(out), "--export-key", str(key),
        "--timeout", "2")  # fmt: skip
    d.step(_("Semanario Sur recovers by case id, asking the nodes it knows"))
    out2 = root / "recuperado-semanario"
    d.v("semanario", "recover", case_id, "--out", str(out2), "--timeout", "2")

    d.step(_("Check: the recovered trees are byte-identical to Ana's"))
    same = identical(inv, out / inv.name) and identical(inv, out2 / inv.name)
    print((_("   byte-identical: yes") if same else _("   byte-identical: NO")), flush=True)
    if not same:
        raise DemoFailed(_("recovered files differ from the originals"))
    d.mark(_("byte-identical"))


def _node_card(d: Demo, name: str) -> str:
    return d.quiet("ana", "node", "card", "--data", str(d.root / "nodes" / name)).strip()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    i18n.setup()  # the reader's language, from VELADOR_LANG or the locale (LANG=es_MX.UTF-8)
    root = Path(tempfile.mkdtemp(prefix="velador-demo-"))
    d = Demo(root)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the finally below still runs.
    signal.signal(signal.SIGTERM, _interrupt)
    code = 1
    try:
        print(_("Velador demo in %(root)s (removed at the end)") % {"root": root}, flush=True)
        story(d)
        d.step(_("Done"))
        code = 0
    except DemoFailed as exc:
        print("\n" + _("demo failed: %(why)s") % {"why": exc}, file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\n" + _("demo interrupted"), file=sys.stderr, flush=True)
        code = 130
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave nodes running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        d.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    print("\n" + _("Timeline:") + "\n" + "\n".join(d.timeline), flush=True)
    print(
        "\n"
        + _("Demo finished in %(seconds).1fs; node processes stopped; %(root)s removed.")
        % {"seconds": d.t(), "root": root},
        flush=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
