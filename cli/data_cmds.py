"""`velador deposit | snapshots | verify | recover`: the data path.

Recovery and verification modules are imported inside their commands: `recover` pulls in the
HTTP client and the node protocol (vault.netrecover), which a deposit, the most frequent and most
often scripted command, has no use for (start-up time and memory, issue 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vault.clock import iso
from vault.deposit import deposit as do_deposit
from vault.errors import N_, NotFoundError, PolicyError, StoreError, VeladorError

from .context import Ctx, emit_json, out_console
from .i18n import _, error_text, ngettext, note_text
from .progress import byte_progress, human_bytes
from .timefmt import local_time

if TYPE_CHECKING:
    from vault.policy import Policy
    from vault.recover import Report

NODE_TIMEOUT = 10.0
"""vault.netrecover.DEFAULT_TIMEOUT, restated so that `--help` need not import the node client
(tests/cli checks that the two agree)."""


def _human(n: int) -> str:
    """The bar's units (cli/progress.py), so the summary and the bar agree."""
    return human_bytes(n)


# Counted nouns, each one ngettext call written out so the catalog tools see the plural pair; a
# sentence takes them as values ("%(files)s, %(size)s"), as cli/timefmt.py does with its units.
def _files(n: int) -> str:
    return ngettext("%(n)d file", "%(n)d files", n) % {"n": n}


def _stores(n: int) -> str:
    return ngettext("%(n)d store", "%(n)d stores", n) % {"n": n}


def _objects(n: int) -> str:
    return ngettext("%(n)d object", "%(n)d objects", n) % {"n": n}


def _snapshots(n: int) -> str:
    return ngettext("%(n)d snapshot", "%(n)d snapshots", n) % {"n": n}


def _chunks(n: int) -> str:
    return ngettext("%(n)d new chunk", "%(n)d new chunks", n) % {"n": n}


OUTCOMES = {
    "released": N_("released"),
    "not released": N_("not released"),
    "unreachable": N_("unreachable"),
    "refused": N_("refused"),
    "does not hold the case": N_("does not hold the case"),
    "lying": N_("lying"),
}
"""vault.netrecover's outcome of asking one node, in the reader's language (--json keeps the
English codes)."""


def _outcome(code: str) -> str:
    return _(OUTCOMES[code]) if code in OUTCOMES else code


def _describe(name: str, outcome: str, detail: str) -> str:
    """vault.netrecover.NodeResult.describe, translated: 'nodo-5 (unreachable: ...)'."""
    if detail:
        return _("%(node)s (%(outcome)s: %(detail)s)") % {
            "node": name,
            "outcome": _outcome(outcome),
            "detail": note_text(detail),  # a Note from vault/netrecover.py, or the node's text
        }
    return f"{name} ({_outcome(outcome)})"


INTERRUPTED = {
    "deposit": N_("deposit interrupted; what was already uploaded is kept"),
    "repair": N_("repair interrupted; what was already uploaded is kept"),
}
# Whole sentences per command (never "{what} interrupted"), so each can be translated.


class DepositInterrupted(VeladorError):
    """Ctrl-C during `velador deposit`: nothing is lost, and the same command resumes."""

    exit_code = 130  # 128 + SIGINT, as shells report an interrupted command


@click.command(
    help=N_(
        "Encrypt PATHS into CASE and upload them to every store of the case.\n\n"
        "Safe to interrupt: run it again and it uploads only what is missing."
    )
)
@click.argument("case_name", metavar="CASE")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--instructions",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help=N_("Text for the outlets that recover this case (what to publish, whom to call)."),
)
@click.option("--jobs", type=click.IntRange(1, 16), help=N_("Parallel workers (default: by size)."))
@click.option(
    "--limit-upload",
    type=click.IntRange(1),
    metavar="KIB/S",
    help=N_(
        "Upload at most this many KiB per second to the S3 stores, as restic does (default: "
        "[network] limit_upload in HOME/config.toml, else no limit)."
    ),
)
@click.option("--json", "as_json", is_flag=True, help=N_("Print a JSON summary."))
@click.pass_obj
def deposit(
    ctx: Ctx,
    case_name: str,
    paths: tuple[Path, ...],
    instructions: Path | None,
    jobs: int | None,
    limit_upload: int | None,
    as_json: bool,
) -> None:
    """`velador deposit` (help text above, translated where it is shown)."""
    from functools import partial

    from vault.deposit import may_upload
    from vault.stores.warmup import StoreWarmup

    from .agent_deposits import one_deposit_at_a_time
    from .context import home_upload_limit

    rec = ctx.state.case(case_name)
    kib_s = limit_upload if limit_upload is not None else home_upload_limit(ctx.home)
    # The S3 stores get ready (boto3 imported, clients built) while the passphrase is derived
    # and the files walked: the first upload starts that much sooner (issue 14).
    likely = partial(may_upload, ctx.state.path, rec.policy.case_id, list(paths))
    with StoreWarmup(list(rec.policy.stores), s3_endpoint=ctx.s3_endpoint, needed=likely) as warm:
        ident = ctx.unlock()
        with one_deposit_at_a_time(ctx.home):
            result = _interruptible_deposit(
                ctx,
                ident,
                rec,
                paths,
                "deposit",
                as_json,
                instructions=instructions,
                jobs=jobs,
                limit_upload=kib_s * 1024 if kib_s else None,
                warm=warm,
            )
    if as_json:
        emit_json(result.to_json())
        return
    for s in result.skipped:
        click.echo(
            _("velador: warning: skipped %(path)s (not a regular file or folder)") % {"path": s},
            err=True,
        )
    for path in result.changed:
        click.echo(
            _(
                "velador: warning: %(path)s changed while it was being read; it is not in this "
                "snapshot (deposit again when it is no longer being written)"
            )
            % {"path": path},
            err=True,
        )
    if result.unchanged:
        if result.bytes_uploaded:
            text = _(
                "Nothing changed since snapshot %(seq)s; re-uploaded %(size)s of missing copies."
            )
        else:
            text = _("Nothing changed since snapshot %(seq)s; nothing uploaded.")
        click.echo(text % {"seq": result.seq, "size": _human(result.bytes_uploaded)}, err=True)
        return
    click.echo(
        _(
            "Snapshot %(seq)s (%(id)s): %(files)s, %(size)s; read %(read)s, uploaded "
            "%(uploaded)s (%(chunks)s) to %(stores)s."
        )
        % {
            "seq": result.seq,
            "id": result.snapshot_id[:12] if result.snapshot_id else "",
            "files": _files(result.files),
            "size": _human(result.bytes_total),
            "read": _human(result.bytes_read),
            "uploaded": _human(result.bytes_uploaded),
            "chunks": _chunks(result.new_chunks),
            "stores": _stores(len(rec.policy.stores)),
        },
        err=True,
    )


@click.command(help=N_("List the snapshots of CASE made from this machine."))
@click.argument("case_name", metavar="CASE")
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def snapshots(ctx: Ctx, case_name: str, as_json: bool) -> None:
    """`velador snapshots`: times local to the reader (cli/timefmt.py), UTC only in --json."""
    rec = ctx.state.case(case_name)
    rows = [
        {
            "seq": s["seq"],
            "id": s["snap_id"],
            "created": iso(s["created"]),
            "files": s["files"],
            "bytes": s["bytes"],
            "parent": s["parent"],
        }
        for s in ctx.state.snapshots(rec.case_id)
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(
            _("No snapshots in %(case)s yet. Deposit with 'velador deposit %(case)s PATH'.")
            % {"case": case_name},
            err=True,
        )
        return
    from .context import table as folding_table

    now = ctx.clock.now()
    # times wrap, never cut
    table = folding_table("#", _("id"), _("created"), _("files"), _("size"))
    for s in ctx.state.snapshots(rec.case_id):
        table.add_row(
            str(s["seq"]),
            s["snap_id"][:16],
            local_time(s["created"], now),
            str(s["files"]),
            _human(s["bytes"]),
        )
    out_console().print(table)


@click.command(
    help=N_(
        "Check that every store of CASE holds every object; name what is missing.\n\n"
        "With --repair, put back what is missing or damaged from a healthy replica."
    )
)
@click.argument("case_name", metavar="CASE")
@click.option("--deep", is_flag=True, help=N_("Download every object and compare its hash."))
@click.option(
    "--repair",
    is_flag=True,
    help=N_(
        "Check deeply, then copy a good replica (checked by hash) over every missing or "
        "damaged copy."
    ),
)
@click.option(
    "--from",
    "sources",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help=N_(
        "With --repair: the files or folders you deposited, to make again what no store holds "
        "intact (repeatable; asks for your passphrase)."
    ),
)
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def verify(
    ctx: Ctx, case_name: str, deep: bool, repair: bool, sources: tuple[Path, ...], as_json: bool
) -> None:
    """`velador verify` (help text above)."""
    from vault.verify import verify_case

    rec = ctx.state.case(case_name)
    if sources and not repair:
        raise PolicyError(N_("--from is only used with --repair"), hint=N_("add --repair"))
    if repair:
        _repair(ctx, case_name, sources, as_json)
        return
    report = verify_case(ctx.state, rec, deep=deep, s3_endpoint=ctx.s3_endpoint)
    if as_json:
        emit_json({"ok": report.ok, **report.__dict__})
    else:
        for line in report.missing:
            click.echo(_("missing  %(what)s") % {"what": line}, err=True)
        for line in report.damaged:
            click.echo(_("damaged  %(what)s") % {"what": line}, err=True)
        for line in report.unreachable:
            click.echo(_("unreachable  %(what)s") % {"what": line}, err=True)
        if report.ok:
            text = (
                _("OK: %(stores)s hold all %(objects)s (%(snapshots)s; deep check).")
                if deep
                else _("OK: %(stores)s hold all %(objects)s (%(snapshots)s).")
            )
            values = {
                "stores": _stores(len(report.stores)),
                "objects": _objects(report.objects),
                "snapshots": _snapshots(report.snapshots),
            }
            click.echo(text % values, err=True)
    if not report.ok:
        n, u = len(report.missing) + len(report.damaged), len(report.unreachable)
        if u:
            message = N_("object copies missing or damaged: %(n)d; stores not reached: %(u)d")
        elif n == 1:
            message = N_("%(n)d object copy is missing or damaged")
        else:
            message = N_("%(n)d object copies are missing or damaged")
        raise StoreError(
            message,
            hint=N_("repair them from a healthy replica: velador verify %(case)s --repair"),
            n=n,
            u=u,
            case=case_name,
        )


def _interruptible_deposit(
    ctx: Ctx,
    ident: Any,
    rec: Any,
    paths: tuple[Path, ...],
    what: str,
    as_json: bool,
    **kwargs: Any,
) -> Any:
    """A deposit with its progress bar; Ctrl-C says that running the command again resumes
    (the caller holds the home's deposit lock). `what` is a key of INTERRUPTED."""
    try:
        with byte_progress(_("Depositing"), quiet=as_json) as progress:
            return do_deposit(
                ctx.state,
                ident,
                rec,
                list(paths),
                ctx.clock,
                progress=progress,
                s3_endpoint=ctx.s3_endpoint,
                **kwargs,
            )
    except (KeyboardInterrupt, click.exceptions.Abort):
        raise DepositInterrupted(
            INTERRUPTED[what],
            hint=N_("run the same command again: it resumes and uploads only what is missing"),
        ) from None


def _repair(ctx: Ctx, case_name: str, sources: tuple[Path, ...], as_json: bool) -> None:
    """`verify --repair` (vault/repair.py), then a deposit from --from for what no store holds."""

    from .agent_deposits import one_deposit_at_a_time

    rec = ctx.state.case(case_name)
    # Repair rewrites store objects and, with --from, forgets index rows and the file cache: it
    # must not run beside a deposit (the agent's or another command's) that relies on them.
    with one_deposit_at_a_time(ctx.home):
        rep, redeposited = _repair_locked(ctx, case_name, rec, sources, as_json)
    _report_repair(case_name, rep, redeposited, as_json)


def _repair_locked(
    ctx: Ctx, case_name: str, rec: Any, sources: tuple[Path, ...], as_json: bool
) -> tuple[Any, int]:
    from vault.repair import prepare_redeposit, repair_case

    rep = repair_case(ctx.state, rec, s3_endpoint=ctx.s3_endpoint)
    for line in rep.repaired:
        if not as_json:
            click.echo(_("repaired  %(what)s") % {"what": line}, err=True)
    redeposited = 0
    if rep.objects_needing_sources() and sources:
        ident = ctx.unlock()
        redeposited = prepare_redeposit(ctx.state, rec, rep, s3_endpoint=ctx.s3_endpoint)
        _interruptible_deposit(ctx, ident, ctx.state.case(case_name), sources, "repair", as_json)
        rep = repair_case(ctx.state, ctx.state.case(case_name), s3_endpoint=ctx.s3_endpoint)
    return rep, redeposited


def _report_repair(case_name: str, rep: Any, redeposited: int, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "ok": rep.ok,
                "repaired": rep.repaired,
                "redeposited": redeposited,
                "unrepaired": [f"{u}: {k}" for u, k in rep.unrepaired],
                "unreachable": rep.found.unreachable,
            }
        )
    elif rep.ok:
        values = {
            "case": case_name,
            "objects": _objects(rep.found.objects),
            "repaired": len(rep.repaired),
            "redeposited": redeposited,
        }
        text = (
            _(
                "OK: every store of %(case)s holds a good copy of all %(objects)s (%(repaired)d "
                "repaired, %(redeposited)d made again from your files)."
            )
            if redeposited
            else _(
                "OK: every store of %(case)s holds a good copy of all %(objects)s (%(repaired)d "
                "repaired)."
            )
        )
        click.echo(text % values, err=True)
    if rep.ok:
        return
    for url, key in rep.unrepaired:
        if not as_json:
            click.echo(_("not repaired  %(store)s: %(key)s") % {"store": url, "key": key}, err=True)
    need = rep.objects_needing_sources()
    lost = rep.snapshots_lost()
    if rep.found.unreachable:
        raise StoreError(
            N_("stores that could not be reached and were not repaired: %(n)d"),
            hint=N_("run 'velador verify %(case)s --repair' again when they are back"),
            n=len(rep.found.unreachable),
            case=case_name,
        )
    if need:
        raise StoreError(
            N_("%(n)d object(s) have no intact copy in any store"),
            hint=N_(
                "make them again from your files: velador verify %(case)s --repair --from "
                "FOLDER (the folders you deposited; this laptop keeps no file names, by design)"
            ),
            n=len(need),
            case=case_name,
        )
    raise StoreError(
        N_("%(n)d snapshot record(s) have no intact copy in any store"),
        hint=N_(
            "deposit again (velador deposit %(case)s PATH...) so that a new snapshot lists "
            "everything"
        ),
        n=len(lost),
        case=case_name,
    )


@click.command(
    help=N_(
        "Recover a case: fetch released shares, verify, combine, decrypt, write under --out.\n\n"
        "With CASE_CARD_OR_ID, the released envelopes come from the case's escrow nodes (a case "
        "id alone asks the nodes in your contacts). With --shares DIR, from offline share files."
    )
)
@click.argument("case_ref", metavar="[CASE_CARD_OR_ID]", required=False)
@click.option(
    "--shares",
    "shares_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=N_(
        "Folder of offline share files (USB sticks); alone, or beside the escrow nodes of "
        "CASE_CARD_OR_ID."
    ),
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help=N_("Folder to write the recovered files into (created if needed)."),
)
@click.option(
    "--snapshot",
    help=N_("Restore only this snapshot (id prefix) instead of the merged tree."),
)
@click.option(
    "--export-key",
    "export_key_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=N_("Also write the case's age key here (0600) for the stock 'age -d -i FILE'."),
)
@click.option(
    "--store",
    "stores",
    multiple=True,
    help=N_("Read from this store instead of the ones in the policy (repeatable)."),
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=NODE_TIMEOUT,
    show_default=True,
    help=N_("Seconds to wait for each escrow node before naming it unreachable."),
)
@click.option("--force", is_flag=True, help=N_("Overwrite files that already exist in --out."))
@click.option("--json", "as_json", is_flag=True, help=N_("Print a JSON report."))
@click.pass_obj
def recover(
    ctx: Ctx,
    case_ref: str | None,
    shares_dir: Path | None,
    out: Path,
    snapshot: str | None,
    export_key_path: Path | None,
    stores: tuple[str, ...],
    timeout: float,
    force: bool,
    as_json: bool,
) -> None:
    """`velador recover` (help text above)."""
    from vault.keyrings import case_keys
    from vault.recover import export_key, restore

    if case_ref is None and shares_dir is None:
        raise PolicyError(
            N_("say where the shares come from: a case card or id, or --shares DIR"),
            hint=N_(
                "velador recover CASE_CARD_OR_ID --out DIR  (escrow nodes), or "
                "velador recover --shares DIR --out DIR  (offline share files)"
            ),
        )
    if case_ref is None:
        assert shares_dir is not None
        policy, secret, report, nodes, box_key = _offline_secret(ctx, shares_dir)
    else:
        policy, secret, report, nodes, box_key = _network_secret(ctx, case_ref, timeout, shares_dir)
    # Deposits made before a `case rotate` are encrypted to earlier keys (decisions.md §9).
    keys = case_keys(
        policy, secret, box_key, report.chain_problems, stores=stores, s3_endpoint=ctx.s3_endpoint
    )
    if export_key_path:
        export_key(keys.secrets, export_key_path, iso(ctx.clock.now()))
    with byte_progress(_("Recovering"), quiet=as_json) as progress:
        restore(
            policy,
            keys.identities(),
            keys.urls,
            out,
            snapshot=snapshot,
            force=force,
            s3_endpoint=ctx.s3_endpoint,
            progress=progress,
            report=report,
        )
    del secret, keys
    alias = ctx.state.alias_of(policy.reporter)
    prov = {
        "reporter": policy.reporter.name,
        "reporter_fingerprint": policy.reporter.fingerprint,
        "reporter_contact": alias,
        "case_id": policy.case_id,
        "policy_hash": policy.hash,
        "nodes": nodes,
    }
    if as_json:
        emit_json({**prov, **report.__dict__, "key_exported": str(export_key_path or "")})
        return
    _print_report(prov, report, export_key_path, ctx.clock.now())


def _offline_secret(ctx: Ctx, shares_dir: Path) -> tuple[Policy, bytes, Report, list[Any], Any]:
    from vault.case import read_share_dir
    from vault.envelope import addressed_to, open_envelope
    from vault.recover import Report, recover_key

    bundle = read_share_dir(shares_dir)
    policy = bundle.policy
    ident = ctx.unlock()
    report = Report(shares_skipped=list(bundle.rejected))
    mnemonics = []
    mine = [(src, e) for src, e in bundle.envelopes if addressed_to(e, ident.card)]
    if not mine:
        raise NotFoundError(
            N_("none of these shares is addressed to your identity"),
            hint=N_("your fingerprint is %(fingerprint)s"),
            fingerprint=ident.fingerprint,
        )
    for src, env in mine:
        try:
            opened = open_envelope(env, policy, ident.box_key)
        except VeladorError as exc:
            report.shares_skipped.append(f"{src}: {error_text(exc)[0]}")
            continue
        mnemonics.append(opened.mnemonic)
        report.shares_used.append(f"{src} (holder {opened.holder})")
    for line in report.shares_skipped:
        click.echo(_("velador: warning: skipped share %(share)s") % {"share": line}, err=True)
    return policy, recover_key(policy, mnemonics, report), report, [], ident.box_key


def _network_secret(
    ctx: Ctx, text: str, timeout: float, shares_dir: Path | None
) -> tuple[Policy, bytes, Report, list[Any], Any]:
    from vault.case import read_share_dir
    from vault.netrecover import NO_CASE, contacts_ref, node_summary, released_secret

    ref = contacts_ref(text, [card for _, card in ctx.state.contacts()])
    bundle = read_share_dir(shares_dir) if shares_dir is not None else None
    ident = ctx.unlock()
    found, secret, offline_skipped = released_secret(
        ref, ident, ctx.clock, timeout=timeout, offline=bundle
    )
    skipped_files = (
        [_("share file %(file)s") % {"file": f} for f in bundle.rejected] if bundle else []
    )
    skipped_files += offline_skipped
    skipped = {id(r) for r in found.skipped()}
    for r in found.of_case():
        if id(r) in skipped and r.outcome != NO_CASE:
            click.echo(
                _("velador: warning: skipped node %(node)s")
                % {"node": _describe(r.name, r.outcome, r.detail)},
                err=True,
            )
        elif id(r) not in skipped and r.detail:  # some good shares, some bad envelopes
            click.echo(
                _("velador: warning: node %(node)s %(detail)s; skipped those")
                % {"node": r.name, "detail": r.detail},
                err=True,
            )
    for line in skipped_files:
        click.echo(_("velador: warning: skipped %(what)s") % {"what": line}, err=True)
    assert found.policy is not None
    return found.policy, secret, found.report, node_summary(found), ident.box_key


def _print_choice(choice: dict[str, Any] | None, fingerprint: str) -> None:
    """Say plainly when the case policy was chosen by a majority of nodes (issue 11 finding 6):
    a bare case id and a reporter who is not a contact leave nothing else to trust."""
    if not choice or choice["by"] != "majority":
        return
    out_console().print(
        _(
            "[bold]The case policy was chosen by majority[/bold]: %(agreeing)d of the "
            "%(serving)d nodes that released serve it, and nothing else vouches for it "
            "(no case card, and the reporter is not in your contacts). Verify the reporter's "
            "fingerprint %(fingerprint)s with them, aloud or over a channel you trust, before "
            "you rely on this material."
        )
        % {
            "agreeing": choice["agreeing"],
            "serving": choice["serving"],
            "fingerprint": fingerprint,
        }
    )


def _print_report(prov: dict[str, object], report: Report, key_path: Path | None, now: int) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    con = out_console()
    if report.instructions:
        con.print(
            Panel(report.instructions, title=_("Instructions from the reporter"), expand=False)
        )
    con.print(
        _("Recovered %(files)s (%(size)s) into %(out)s")
        % {"files": _files(report.files), "size": _human(report.bytes), "out": report.out},
        markup=False,
    )
    who = {
        "name": escape(str(prov["reporter"])),
        "fingerprint": prov["reporter_fingerprint"],
        "contact": escape(str(prov["reporter_contact"] or "")),
    }
    if prov["reporter_contact"]:
        con.print(_("Signed by %(name)s (%(fingerprint)s), your contact '%(contact)s'.") % who)
    else:
        con.print(
            _(
                "Signed by %(name)s (%(fingerprint)s). [bold]Not in your contacts[/bold]: "
                "compare this fingerprint with one you trust before publishing."
            )
            % who
        )
    _print_choice(report.policy_choice, str(prov["reporter_fingerprint"]))
    if report.snapshots:
        first, last = report.snapshots[0], report.snapshots[-1]
        text = (
            _("%(snapshots)s, %(first)s to %(last)s; chain intact.")
            if report.chain_intact
            else _("%(snapshots)s, %(first)s to %(last)s; chain BROKEN.")
        )
        con.print(
            text
            % {
                "snapshots": _snapshots(len(report.snapshots)),
                "first": local_time(first["created"], now),
                "last": local_time(last["created"], now),
            },
            markup=False,
        )
    for p in report.chain_problems:
        con.print(_("  chain: %(problem)s") % {"problem": p}, markup=False)
    con.print(
        _("Case %(case_id)s, policy %(policy)s.")
        % {"case_id": prov["case_id"], "policy": str(prov["policy_hash"])[:16]}
    )
    con.print(
        _("Shares used: %(used)d; skipped: %(skipped)d.")
        % {"used": len(report.shares_used), "skipped": len(report.shares_skipped)}
    )
    for n in prov.get("nodes") or []:  # type: ignore[attr-defined]
        con.print(_node_line(n, now), markup=False)
    for p in report.store_problems:
        con.print(_("  store: %(problem)s") % {"problem": p}, markup=False)
    if key_path:
        con.print(
            _("Case key written to %(path)s (open any object with 'age -d -i %(path)s').")
            % {"path": key_path},
            markup=False,
        )


def _node_line(n: dict[str, Any], now: int) -> str:
    """One node's part in a recovery, as a whole sentence per case (released or not, with or
    without shares), so a translation can reorder it."""
    values = {
        "node": n["node"],
        "outcome": _outcome(n["outcome"]),
        "when": local_time(n["released_at"], now) if n["released_at"] else "",
        "shares": ", ".join(n["shares"]) if n["shares"] else "",
        "detail": n["detail"] or "",
    }
    if n["released_at"] and n["shares"]:
        text = _("  node %(node)s: %(outcome)s at %(when)s, share %(shares)s")
    elif n["released_at"]:
        text = _("  node %(node)s: %(outcome)s at %(when)s")
    elif n["shares"]:
        text = _("  node %(node)s: %(outcome)s, share %(shares)s")
    else:
        text = _("  node %(node)s: %(outcome)s")
    if n["detail"]:
        text += ": %(detail)s"
    return text % values
