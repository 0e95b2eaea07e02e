"""`velador node ...`: run and inspect an escrow node (docs/guide-operator.md).

    velador node init   --data DIR --name NAME --url URL [--host H] [--port P]
                        [--registration closed|open]
    velador node admit  --data DIR FINGERPRINT
    velador node invite --data DIR [--ttl 7d]
    velador node access --data DIR
    velador node revoke --data DIR FINGERPRINT_OR_INVITATION_ID
    velador node serve  --data DIR [--host 127.0.0.1] [--port 8700] [--tick SECONDS]
    velador node card   --data DIR
    velador node status --data DIR [--json]
    velador node audit  --data DIR [--verify] [--case ID] [--limit N]
    velador node restore --data DIR BACKUP

Register with the main CLI by `cli.add_command(node)`; every command takes --data explicitly
and does not use the click context object.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import click

from vault.clock import iso
from vault.errors import N_, FormatError, VeladorError

from .i18n import _, ngettext
from .timefmt import local_time

DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=N_("The node's data folder (identity, node.toml, node.db)."),
)


def _local(ts: int) -> str:
    """A time for the operator: local zone with its name (cli/timefmt.py), never bare UTC."""
    return local_time(int(ts), int(time.time()))


@click.group(name="node", help=N_("Run an escrow node (for partner outlets)."))
def node() -> None:
    pass


@node.command(help=N_("Create the node identity and a default node.toml in DIR."))
@DATA
@click.option(
    "--name", required=True, help=N_("The node's name, shown to reporters and recipients.")
)
@click.option("--url", required=True, help=N_("Public URL reporters and peers use (https://...)."))
@click.option("--host", default="127.0.0.1", show_default=True, help=N_("Listen address."))
@click.option("--port", default=8700, show_default=True, type=int, help=N_("Listen port."))
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help=N_("Use the passphrase in this file instead of generating one."),
)
@click.option(
    "--registration",
    type=click.Choice(["closed", "open"]),
    default="closed",
    show_default=True,
    help=N_("closed: only reporters you admit or invite may register cases; open: anyone (demos)."),
)
def init(
    data_dir: Path,
    name: str,
    url: str,
    host: str,
    port: int,
    passphrase_file: Path | None,
    registration: str,
) -> None:
    from escrow_node.config import CONFIG_FILE, PASSPHRASE_FILE, write_default_config
    from vault.identity import create_identity

    check_public_url(url)
    if (data_dir / CONFIG_FILE).exists():
        raise FormatError(
            N_("%(path)s already holds a node"),
            hint=N_("use another --data folder"),
            path=str(data_dir),
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    if passphrase_file is not None:
        passphrase = passphrase_file.read_text("utf-8").rstrip("\n")
    else:
        passphrase = secrets.token_urlsafe(32)
        path = data_dir / PASSPHRASE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(passphrase + "\n")
    ident = create_identity(data_dir, name, "node", passphrase, int(time.time()), url)
    write_default_config(data_dir, ident.card.name, url, host, port, registration)
    click.echo(_("node identity created in %(path)s") % {"path": data_dir})
    click.echo(_("fingerprint: %(fingerprint)s") % {"fingerprint": ident.fingerprint})
    if passphrase_file is None:
        click.echo(
            _(
                "the key passphrase is in %(path)s (mode 0600); see "
                "docs/guide-operator.md for moving it into a systemd credential"
            )
            % {"path": data_dir / PASSPHRASE_FILE}
        )
    click.echo(ident.card.text)
    if registration == "open":
        click.echo(_("registration is OPEN: any key may register cases at this node"), err=True)
    else:
        click.echo(
            _(
                "registration is closed: admit reporters with 'velador node admit' or "
                "'velador node invite'"
            ),
            err=True,
        )


def check_public_url(url: str) -> None:
    """https://, or plain http:// only for a loopback or onion host (nobody can read or change
    a loopback connection, and Tor encrypts an onion one end to end)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if parts is not None and host and parts.scheme == "https":
        return
    if parts is not None and host and parts.scheme == "http":
        if host == "localhost" or host.endswith(".onion"):
            return
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
    raise FormatError(
        N_(
            "--url must start with https:// (plain http:// is allowed only for loopback and "
            "onion addresses), not %(url)s"
        ),
        hint=N_(
            "put the node behind a TLS reverse proxy (docs/guide-operator.md) and give its "
            "https:// address"
        ),
        url=repr(url),
    )


@node.command(help=N_("Serve the API and run the deadline engine until SIGTERM."))
@DATA
@click.option("--host", default=None, help=N_("Listen address (default from node.toml)."))
@click.option("--port", default=None, type=int, help=N_("Listen port (default from node.toml)."))
@click.option("--tick", default=None, type=float, help=N_("Sweep period in seconds (safety net)."))
@click.option(
    "--log-level", default="info", show_default=True, help=N_("debug, info, warning or error.")
)
@click.option(
    "--test-clock-file",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,
    help="TEST ONLY: read the time from this file (needs VELADOR_NODE_TEST_CLOCK=1).",
)
def serve(
    data_dir: Path,
    host: str | None,
    port: int | None,
    tick: float | None,
    log_level: str,
    test_clock_file: Path | None,
) -> None:
    from escrow_node.server import serve as run

    if tick is not None and not 0.05 <= tick <= 3600:
        raise FormatError(N_("--tick must be between 0.05 and 3600 seconds"))
    run(data_dir, host, port, tick, test_clock_file, log_level)


@node.command(help=N_("Print the node's contact card on one line."))
@DATA
def card(data_dir: Path) -> None:
    from vault.identity import load_card

    click.echo(load_card(data_dir).text)


def _open_store(data_dir: Path):  # type: ignore[no-untyped-def]
    from escrow_node.config import DB_FILE, load_config
    from escrow_node.db import Store

    load_config(data_dir)  # a clear error if DIR is not a node
    if not (data_dir / DB_FILE).exists():
        raise FormatError(
            N_("%(path)s has no database yet"), hint=N_("start the node once"), path=str(data_dir)
        )
    return Store(data_dir / DB_FILE)


@node.command(
    help=N_("Cases by state, next deadlines and outbox backlog (nothing sealed is shown).")
)
@DATA
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
def status(data_dir: Path, as_json: bool) -> None:
    from escrow_node import audit
    from escrow_node.engine import STATES

    store = _open_store(data_dir)
    try:
        with store.read() as conn:
            counts = dict.fromkeys(STATES, 0)
            for state, n in conn.execute("SELECT state, count(*) FROM cases GROUP BY state"):
                counts[state] = n
            upcoming = [
                dict(r)
                for r in conn.execute(
                    "SELECT case_id, state, next_wake FROM cases WHERE next_wake IS NOT NULL"
                    " ORDER BY next_wake LIMIT 10"
                )
            ]
            pending = conn.execute(
                "SELECT channel, count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL"
                " GROUP BY channel"
            ).fetchall()
            failed = conn.execute("SELECT count(*) FROM outbox WHERE failed IS NOT NULL").fetchone()
            chain = audit.verify(conn)
    finally:
        store.close()
    out = {
        "cases": counts,
        "next": upcoming,
        "outbox_pending": {r[0]: r[1] for r in pending},
        "outbox_failed": failed[0],
        "audit_entries": chain.entries,
        "audit_ok": chain.ok,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    by_state = ", ".join(f"{s} {n}" for s, n in counts.items() if n)
    click.echo(_("cases: %(counts)s") % {"counts": by_state} if by_state else _("cases: none"))
    for item in upcoming:
        click.echo(
            _("  next: %(case_id)s  %(state)s at %(when)s")
            % {
                "case_id": item["case_id"],
                "state": f"{item['state']:<14}",
                "when": _local(item["next_wake"]),
            }
        )
    backlog = sum(out["outbox_pending"].values())
    click.echo(
        _("outbox: %(pending)d pending, %(failed)d failed")
        % {"pending": backlog, "failed": out["outbox_failed"]}
    )
    click.echo(
        (
            _("audit: %(n)d entries, chain ok")
            if chain.ok
            else _("audit: %(n)d entries, chain BROKEN")
        )
        % {"n": chain.entries}
    )


class AuditChainBroken(FormatError):
    """The audit log's hash chain does not verify."""


@node.command(name="audit", help=N_("Show or verify the hash-chained audit log."))
@DATA
@click.option("--verify", is_flag=True, help=N_("Check the hash chain; exit non-zero if broken."))
@click.option("--case", "case_id", default=None, help=N_("Only entries of this case."))
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=int,
    help=N_("Show at most this many entries."),
)
def audit_cmd(data_dir: Path, verify: bool, case_id: str | None, limit: int) -> None:
    from escrow_node import audit

    store = _open_store(data_dir)
    try:
        with store.read() as conn:
            if verify:
                chain = audit.verify(conn)
                if not chain.ok:
                    raise AuditChainBroken(
                        N_("audit chain broken at entry %(entry)s: %(reason)s"),
                        hint=N_("restore DIR from a backup and compare"),
                        entry=chain.first_bad,
                        reason=chain.reason,
                    )
                click.echo(
                    _("audit chain ok: %(n)d entries, head %(head)s")
                    % {"n": chain.entries, "head": chain.head}
                )
                return
            for e in audit.entries(conn, case_id, limit):
                # The log's own record: event names and details as stored (English), the time
                # local to the operator.
                detail = json.dumps(e["detail"], sort_keys=True)
                click.echo(
                    f"{e['seq']:>6} {_local(e['time'])} {e['case_id'] or '-'} {e['event']} {detail}"
                )
    finally:
        store.close()


def _registry(data_dir: Path):  # type: ignore[no-untyped-def]
    """The node database for the access commands; created if the node never ran (admitting
    reporters before the first start is normal), safe while the node serves (SQLite WAL)."""
    from escrow_node.config import DB_FILE, load_config
    from escrow_node.db import Store

    config = load_config(data_dir)
    return config, Store(data_dir / DB_FILE)


@node.command(
    help=N_(
        "Let the reporter with this key FINGERPRINT register new cases (closed registration).\n\n"
        "The reporter reads her fingerprint with 'velador id show'; check it with her over a "
        "channel you trust (in person, a call), as you would a contact card."
    )
)
@DATA
@click.argument("fingerprint")
def admit(data_dir: Path, fingerprint: str) -> None:
    from escrow_node import admission

    _config, store = _registry(data_dir)
    try:
        with store.tx() as conn:
            fp = admission.check_fingerprint(fingerprint)
            new = admission.admit(conn, fp, int(time.time()))
    finally:
        store.close()
    click.echo(
        (_("admitted %(fingerprint)s") if new else _("%(fingerprint)s was already admitted"))
        % {"fingerprint": fp}
    )


@node.command(
    help=N_(
        "Print a single-use invitation code for one reporter (closed registration).\n\n"
        "Give the code to the reporter over a private channel; she enters it with "
        "'velador case create ... --invite NODE'. Her first registration uses it up and admits "
        "her key. Only the code's hash is stored: it cannot be shown again."
    )
)
@DATA
@click.option(
    "--ttl",
    default=None,
    help=N_("How long the code stays valid, e.g. 2d (default: [registration] invite_ttl, 7 days)."),
)
def invite(data_dir: Path, ttl: str | None) -> None:
    from escrow_node import admission
    from vault.durations import parse_duration

    config, store = _registry(data_dir)
    seconds = parse_duration(ttl, "--ttl") if ttl else config.registration.invite_ttl
    try:
        with store.tx() as conn:
            code, expires = admission.invite(conn, int(time.time()), seconds)
    finally:
        store.close()
    click.echo(code)
    click.echo(
        _(
            "single-use invitation %(id)s, valid until %(when)s; "
            "send it to the reporter over a private channel"
        )
        % {"id": code.split(".", 1)[0], "when": _local(expires)},
        err=True,
    )
    if config.registration.open:
        click.echo(_("note: registration at this node is open, so nobody needs a code"), err=True)


@node.command(
    help=N_("List the admitted reporter keys and the invitation codes (ids only, never the codes).")
)
@DATA
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
def access(data_dir: Path, as_json: bool) -> None:
    from escrow_node import admission

    config, store = _registry(data_dir)
    try:
        with store.read() as conn:
            keys = admission.admitted(conn)
            invites = admission.invitations(conn)
    finally:
        store.close()
    now = int(time.time())

    def state(i: admission.Invitation) -> str:
        # --json: English, UTC (scripts read it)
        if i.used is not None:
            return f"used {iso(i.used)} by {i.used_by}"
        return "expired" if i.expires <= now else f"valid until {iso(i.expires)}"

    def shown(i: admission.Invitation) -> str:
        if i.used is not None:
            return _("used %(when)s by %(who)s") % {"when": _local(i.used), "who": i.used_by}
        if i.expires <= now:
            return _("expired")
        return _("valid until %(when)s") % {"when": _local(i.expires)}

    if as_json:
        out = {
            "registration": config.registration.mode,
            "admitted": [{"fingerprint": f, "added": a, "how": h} for f, a, h in keys],
            "invitations": [{"id": i.id, "state": state(i)} for i in invites],
        }
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    mode = _("open") if config.registration.open else _("closed")
    click.echo(_("registration: %(mode)s") % {"mode": mode})
    click.echo(_("admitted keys: %(n)d") % {"n": len(keys)})
    for fp, added, how in keys:
        click.echo(
            _("  %(fingerprint)s  since %(when)s  (%(how)s)")
            % {"fingerprint": fp, "when": _local(added), "how": how}
        )
    click.echo(_("invitations: %(n)d") % {"n": len(invites)})
    for i in invites:
        click.echo(f"  {i.id}  {shown(i)}")


class NothingToRevoke(FormatError):
    """Neither an admitted key nor an unused invitation matches."""


@node.command(
    help=N_(
        "Withdraw an admitted key or an unused invitation code.\n\n"
        "Only NEW cases are refused afterwards: the reporter's registered cases keep running, "
        "since refusing her check-ins would release her material."
    )
)
@DATA
@click.argument("what", metavar="FINGERPRINT_OR_INVITATION_ID")
def revoke(data_dir: Path, what: str) -> None:
    from escrow_node import admission

    _config, store = _registry(data_dir)
    try:
        with store.tx() as conn:
            kind = admission.revoke(conn, what)
    finally:
        store.close()
    if kind is None:
        raise NothingToRevoke(
            N_("no admitted key or unused invitation matches %(what)s"),
            hint=N_("see 'velador node access --data DIR'"),
            what=repr(what),
        )
    text = _("revoked key %(what)s") if kind == "key" else _("revoked invitation %(what)s")
    click.echo(text % {"what": what})


@node.command(
    help=N_(
        "Replace the node database by BACKUP and re-arm its watching cases (node stopped).\n\n"
        "Every case in ARMED, REMINDED or OVERDUE gets a full interval from now, so check-ins "
        "lost with the newer database cannot cause a release (docs/protocol.md §6.3)."
    )
)
@DATA
@click.argument("backup", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def restore(data_dir: Path, backup: Path) -> None:
    """`velador node restore` (docs/protocol.md §6.3; help text above)."""
    from escrow_node.config import DB_FILE, load_config
    from escrow_node.datalock import data_dir_locked
    from escrow_node.db import Store
    from escrow_node.restore import check_backup, copy_in, rearm

    load_config(data_dir)  # a clear error if DIR is not a node
    check_backup(backup)
    db_path = data_dir / DB_FILE
    with data_dir_locked(data_dir, "restoring"):  # refused while a node serves this folder
        copy_in(backup, db_path)
        store = Store(db_path)
        try:
            done = rearm(store, int(time.time()))
        finally:
            store.close()
    click.echo(_("restored %(db)s from %(backup)s") % {"db": db_path, "backup": backup})
    click.echo(
        ngettext(
            "re-armed %(n)d case to a full interval from now",
            "re-armed %(n)d cases to a full interval from now",
            len(done),
        )
        % {"n": len(done)}
    )
    for case_id, old, deadline in done:
        click.echo(
            _("  %(case_id)s  %(old)s -> deadline %(when)s")
            % {"case_id": case_id, "old": f"{old:<14}", "when": _local(deadline)}
        )


def main() -> None:  # pragma: no cover - the main CLI has its own handler
    from . import i18n

    i18n.setup()
    try:
        node(standalone_mode=False)
    except VeladorError as exc:
        message, hint = i18n.error_text(exc)
        click.echo(_("velador: error: %(message)s") % {"message": message}, err=True)
        if hint:
            click.echo(_("velador: hint: %(hint)s") % {"hint": hint}, err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
