"""`velador node ...`: run and inspect an escrow node (docs/guide-operator.md).

    velador node init   --data DIR --name NAME --url URL [--host H] [--port P]
    velador node serve  --data DIR [--host 127.0.0.1] [--port 8700] [--tick SECONDS]
    velador node card   --data DIR
    velador node status --data DIR [--json]
    velador node audit  --data DIR [--verify] [--case ID] [--limit N]
    velador node restore --data DIR BACKUP

Register with the main CLI by `cli.add_command(node)`; every command takes --data explicitly
and does not use the click context object.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import click

from vault.clock import iso
from vault.errors import FormatError, VeladorError

DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's data folder (identity, node.toml, node.db).",
)


@click.group(name="node")
def node() -> None:
    """Run an escrow node (for partner outlets)."""


@node.command()
@DATA
@click.option("--name", required=True, help="The node's name, shown to reporters and recipients.")
@click.option("--url", required=True, help="Public URL reporters and peers use (https://...).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option("--port", default=8700, show_default=True, type=int, help="Listen port.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Use the passphrase in this file instead of generating one.",
)
def init(
    data_dir: Path, name: str, url: str, host: str, port: int, passphrase_file: Path | None
) -> None:
    """Create the node identity and a default node.toml in DIR."""
    from escrow_node.config import CONFIG_FILE, PASSPHRASE_FILE, write_default_config
    from vault.identity import create_identity

    if not url.startswith(("http://", "https://")):
        raise FormatError("--url must start with https:// (or http:// for loopback and onion)")
    if (data_dir / CONFIG_FILE).exists():
        raise FormatError(f"{data_dir} already holds a node", hint="use another --data folder")
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
    write_default_config(data_dir, ident.card.name, url, host, port)
    click.echo(f"node identity created in {data_dir}")
    click.echo(f"fingerprint: {ident.fingerprint}")
    if passphrase_file is None:
        click.echo(
            f"the key passphrase is in {data_dir / PASSPHRASE_FILE} (mode 0600); see "
            "docs/guide-operator.md for moving it into a systemd credential"
        )
    click.echo(ident.card.text)


@node.command()
@DATA
@click.option("--host", default=None, help="Listen address (default from node.toml).")
@click.option("--port", default=None, type=int, help="Listen port (default from node.toml).")
@click.option("--tick", default=None, type=float, help="Sweep period in seconds (safety net).")
@click.option(
    "--log-level", default="info", show_default=True, help="debug, info, warning or error."
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
    """Serve the API and run the deadline engine until SIGTERM."""
    from escrow_node.server import serve as run

    if tick is not None and not 0.05 <= tick <= 3600:
        raise FormatError("--tick must be between 0.05 and 3600 seconds")
    run(data_dir, host, port, tick, test_clock_file, log_level)


@node.command()
@DATA
def card(data_dir: Path) -> None:
    """Print the node's contact card on one line."""
    from vault.identity import load_card

    click.echo(load_card(data_dir).text)


def _open_store(data_dir: Path):  # type: ignore[no-untyped-def]
    from escrow_node.config import DB_FILE, load_config
    from escrow_node.db import Store

    load_config(data_dir)  # a clear error if DIR is not a node
    if not (data_dir / DB_FILE).exists():
        raise FormatError(f"{data_dir} has no database yet", hint="start the node once")
    return Store(data_dir / DB_FILE)


@node.command()
@DATA
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(data_dir: Path, as_json: bool) -> None:
    """Cases by state, next deadlines and outbox backlog (nothing sealed is shown)."""
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
    click.echo("cases: " + (", ".join(f"{s} {n}" for s, n in counts.items() if n) or "none"))
    for item in upcoming:
        click.echo(f"  next: {item['case_id']}  {item['state']:<14} at {iso(item['next_wake'])}")
    backlog = sum(out["outbox_pending"].values())
    click.echo(f"outbox: {backlog} pending, {out['outbox_failed']} failed")
    click.echo(f"audit: {chain.entries} entries, chain {'ok' if chain.ok else 'BROKEN'}")


class AuditChainBroken(FormatError):
    """The audit log's hash chain does not verify."""


@node.command(name="audit")
@DATA
@click.option("--verify", is_flag=True, help="Check the hash chain; exit non-zero if broken.")
@click.option("--case", "case_id", default=None, help="Only entries of this case.")
@click.option(
    "--limit", default=50, show_default=True, type=int, help="Show at most this many entries."
)
def audit_cmd(data_dir: Path, verify: bool, case_id: str | None, limit: int) -> None:
    """Show or verify the hash-chained audit log."""
    from escrow_node import audit

    store = _open_store(data_dir)
    try:
        with store.read() as conn:
            if verify:
                chain = audit.verify(conn)
                if not chain.ok:
                    raise AuditChainBroken(
                        f"audit chain broken at entry {chain.first_bad}: {chain.reason}",
                        hint="restore DIR from a backup and compare",
                    )
                click.echo(f"audit chain ok: {chain.entries} entries, head {chain.head}")
                return
            for e in audit.entries(conn, case_id, limit):
                detail = json.dumps(e["detail"], sort_keys=True)
                click.echo(
                    f"{e['seq']:>6} {iso(e['time'])} {e['case_id'] or '-'} {e['event']} {detail}"
                )
    finally:
        store.close()


@node.command()
@DATA
@click.argument("backup", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def restore(data_dir: Path, backup: Path) -> None:
    """Replace the node database by BACKUP and re-arm its watching cases (node stopped).

    Every case in ARMED, REMINDED or OVERDUE gets a full interval from now, so check-ins lost
    with the newer database cannot cause a release (docs/protocol.md §6.3).
    """
    from escrow_node.config import DB_FILE, load_config
    from escrow_node.db import Store
    from escrow_node.restore import check_backup, copy_in, rearm

    load_config(data_dir)  # a clear error if DIR is not a node
    check_backup(backup)
    db_path = data_dir / DB_FILE
    copy_in(backup, db_path)
    store = Store(db_path)
    try:
        done = rearm(store, int(time.time()))
    finally:
        store.close()
    click.echo(f"restored {db_path} from {backup}")
    click.echo(f"re-armed {len(done)} case(s) to a full interval from now")
    for case_id, old, deadline in done:
        click.echo(f"  {case_id}  {old:<14} -> deadline {iso(deadline)}")


def main() -> None:  # pragma: no cover - the main CLI has its own handler
    try:
        node(standalone_mode=False)
    except VeladorError as exc:
        click.echo(f"velador: error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"velador: hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
