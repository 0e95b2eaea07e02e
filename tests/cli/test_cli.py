"""The `velador` command end to end (in process): every user-visible message and exit code."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.main import cli, main
from vault.signing import sign_document

PW = "reporter passphrase"
OPW = "outlet passphrase"


class Velador:
    """Run `velador` through the real error handler; return (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, home: Path, *args: str, passphrase: str = PW) -> tuple[int, str, str]:
        self.capsys.readouterr()
        old = os.environ.get("VELADOR_PASSPHRASE")
        os.environ["VELADOR_PASSPHRASE"] = passphrase
        try:
            main(["--home", str(home), *map(str, args)])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            if old is None:
                del os.environ["VELADOR_PASSPHRASE"]
            else:
                os.environ["VELADOR_PASSPHRASE"] = old
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, home: Path, *args: str, passphrase: str = PW) -> str:
        code, out, err = self(home, *args, passphrase=passphrase)
        assert code == 0, err
        return out

    def json(self, home: Path, *args: str, passphrase: str = PW):
        return json.loads(self.ok(home, *args, "--json", passphrase=passphrase))


@pytest.fixture
def v(capsys):
    return Velador(capsys)


@pytest.fixture
def world(v, tmp_path, homes):
    """A reporter, an outlet in its contacts, a 2-of-4 case replicated to two file:// stores."""
    r, o = homes("reporter"), homes("outlet")
    v.ok(r, "id", "new", "--name", "Rita Reporter")
    v.ok(o, "id", "new", "--name", "Diario Sur", "--role", "outlet", passphrase=OPW)
    card = v.ok(o, "id", "card", passphrase=OPW).strip()
    v.ok(r, "contact", "add", card, "--alias", "sur")
    v.ok(homes("reporter"), "contact", "list")
    stores = [tmp_path / "storeA", tmp_path / "storeB"]
    info = v.json(
        r,
        "case",
        "create",
        "inv",
        "--recipient",
        "sur",
        "--threshold",
        "2",
        "--shares",
        "4",
        "--offline-dir",
        tmp_path / "shares",
        "--store",
        f"file://{stores[0]}",
        "--store",
        f"file://{stores[1]}",
    )
    data = tmp_path / "data" / "inv"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (data / "empty").write_bytes(b"")
    w = type("World", (), {})()
    w.r, w.o, w.stores, w.info, w.data = r, o, stores, info, data
    w.shares = tmp_path / "shares"
    w.tmp = tmp_path
    w.case_id = info["case_id"]
    return w


def share_subset(w, n: int, name: str) -> Path:
    d = w.tmp / name
    d.mkdir()
    for p in sorted(w.shares.glob("*.velador-share"))[:n]:
        shutil.copy(p, d / p.name)
    return d


def same_tree(a: Path, b: Path) -> None:
    fa = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    fb = sorted(str(p.relative_to(b)) for p in b.rglob("*"))
    assert fa == fb
    for rel in fa:
        if (a / rel).is_file():
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# --- identities and contacts ----------------------------------------------------------------


def test_id_new_card_and_show(v, homes):
    h = homes("x")
    code, _, err = v(h, "id", "new", "--name", "Ana")
    assert code == 0
    assert "Fingerprint:" in err
    assert stat.S_IMODE((h / "identity.json").stat().st_mode) == 0o600
    card_out = v.ok(h, "id", "card")
    assert card_out.count("\n") == 1
    assert card_out.startswith("velador:card:v1:")
    info = v.json(h, "id", "show")
    assert info["name"] == "Ana"
    assert info["role"] == "reporter"
    assert info["card"] == card_out.strip()
    assert len(info["fingerprint"]) == 19
    assert info["fingerprint"] in v.ok(h, "id", "show")


def test_id_new_refuses_second_identity(v, homes):
    h = homes("x")
    v.ok(h, "id", "new", "--name", "Ana")
    code, _, err = v(h, "id", "new", "--name", "Bea")
    assert code == 65
    assert "velador: error: an identity already exists in" in err


def test_wrong_passphrase(v, world):
    code, _, err = v(world.r, "deposit", "inv", world.data, passphrase="not it")
    assert code == 77
    assert err.splitlines()[0] == "velador: error: wrong passphrase for this identity"
    assert "velador: hint: check the keyboard layout and caps lock" in err


def test_no_identity(v, homes):
    code, _, err = v(homes("empty"), "id", "card")
    assert code == 66
    assert "velador: error: no identity in" in err


def test_tampered_card_is_refused(v, world, homes):
    card = v.ok(world.o, "id", "card").strip()
    mid = len(card) // 2
    bad = card[:mid] + ("A" if card[mid] != "A" else "B") + card[mid + 1 :]
    code, _, err = v(world.r, "contact", "add", bad, "--alias", "evil")
    assert code == 65
    assert "velador: error: this contact card is malformed or has been altered" in err
    assert "evil" not in [c["alias"] for c in v.json(world.r, "contact", "list")]


def test_contact_list_json(v, world):
    rows = v.json(world.r, "contact", "list")
    assert [(c["alias"], c["name"], c["role"]) for c in rows] == [("sur", "Diario Sur", "outlet")]
    assert rows[0]["fingerprint"] == v.json(world.o, "id", "show")["fingerprint"]


def test_unknown_contact_as_recipient(v, world):
    code, _, err = v(
        world.r,
        "case",
        "create",
        "x",
        "--recipient",
        "nobody",
        "--threshold",
        "2",
        "--shares",
        "2",
        "--offline-dir",
        world.tmp / "s2",
    )
    assert code == 66
    assert "velador: error:" in err and "nobody" in err


# --- cases --------------------------------------------------------------------------------


def test_case_create_writes_policy_and_private_share_files(world):
    files = sorted(world.shares.glob("*.velador-share"))
    assert len(files) == 4
    assert (world.shares / "policy.json").is_file()
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        doc = json.loads(p.read_text())
        assert doc["kind"] == "velador-share-file"
        assert doc["case_id"] == world.case_id
    assert world.info["split"] == "2 of 4"
    assert sorted(str(p) for p in files) == sorted(world.info["share_files"])


def test_stores_never_learn_who_works_on_the_case(v, world):
    """The policy names people; a store provider must not see it (threat model §2.5)."""
    v.ok(world.r, "deposit", "inv", world.data)
    for store in world.stores:
        blobs = [p.read_bytes() for p in store.rglob("*") if p.is_file()]
        assert blobs
        for needle in (b"Rita Reporter", b"Diario Sur", b"velador:card:v1:"):
            assert not any(needle in b for b in blobs), (store, needle)


def test_case_name_too_long_is_refused_at_create(v, world):
    code, _, err = v(world.r, "case", "create", "x" * 1025, "--recipient", "sur", "--threshold",
                     "1", "--shares", "1", "--offline-dir", world.shares)  # fmt: skip
    assert code == 75
    assert err.splitlines()[0] == "velador: error: a case name must have 1 to 1024 bytes"


def test_case_list_and_show(v, world):
    rows = v.json(world.r, "case", "list")
    assert [r["case"] for r in rows] == ["inv"]
    info = v.json(world.r, "case", "show", "inv")
    assert info["case_id"] == world.case_id
    assert info["split"] == "2 of 4"
    assert info["stores"] == [f"file://{s}" for s in world.stores]
    assert "inv" in v.ok(world.r, "case", "list")
    assert world.case_id in v.ok(world.r, "case", "show", "inv")
    code, _, _ = v(world.r, "case", "show", "nope")
    assert code == 66


def test_case_create_needs_a_split(v, world):
    code, _, err = v(world.r, "case", "create", "y", "--recipient", "sur")
    assert code == 75
    assert "velador: error: say how to split the key" in err


# --- deposits, snapshots, verify ----------------------------------------------------------


def test_deposit_json_and_unchanged_redeposit(v, world):
    s = v.json(world.r, "deposit", "inv", world.data)
    assert s["files"] == 3
    assert s["bytes_read"] == 6 + 300_000
    assert s["bytes_uploaded"] > 300_000  # encrypted, to two stores
    assert s["new_chunks"] >= 2
    assert len(s["snapshot_id"]) == 64
    assert s["unchanged"] is False
    again = v.json(world.r, "deposit", "inv", world.data)
    assert again["unchanged"] is True
    assert again["bytes_uploaded"] == 0
    snaps = v.json(world.r, "snapshots", "inv")
    assert [x["id"] for x in snaps] == [s["snapshot_id"]]
    assert snaps[0]["files"] == 3
    assert s["snapshot_id"][:16] in v.ok(world.r, "snapshots", "inv")


def test_verify_missing_object_then_repair(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    code, _, err = v(world.r, "verify", "inv")
    assert code == 0
    assert err.startswith("OK: 2 stores hold all")
    victim = sorted((world.stores[0] / world.case_id / "objects").rglob("*"))
    victim = next(p for p in victim if p.is_file())
    victim.unlink()
    key = f"{world.case_id}/objects/{victim.parent.name}/{victim.name}"
    code, _, err = v(world.r, "verify", "inv")
    assert code == 74
    assert f"missing  file://{world.stores[0]}: {key}" in err
    assert "velador: error: 1 object copy is missing or damaged" in err
    # Given the report, when the reporter deposits again, then the copy is re-uploaded.
    s = v.json(world.r, "deposit", "inv", world.data)
    assert s["bytes_uploaded"] > 0
    assert victim.exists()
    assert v(world.r, "verify", "inv")[0] == 0


def test_verify_deep_detects_corruption(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    objs = [p for p in (world.stores[1] / world.case_id / "objects").rglob("*") if p.is_file()]
    victim = max(objs, key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    assert v(world.r, "verify", "inv")[0] == 0  # same size: only a deep check sees it
    code, _, err = v(world.r, "verify", "inv", "--deep")
    assert code == 74
    assert f"damaged  file://{world.stores[1]}: {world.case_id}/objects/" in err
    assert victim.name in err


# --- recovery ------------------------------------------------------------------------------


def test_recover_with_exactly_k_shares(v, world):
    instr = world.tmp / "instructions.txt"
    instr.write_text("Publish on Monday. Call Marta first.")
    v.ok(world.r, "deposit", "inv", world.data, "--instructions", instr)
    shares = share_subset(world, 2, "two")
    out = world.tmp / "out"
    key = world.tmp / "k.txt"
    stdout = v.ok(
        world.o, "recover", "--shares", shares, "--out", out, "--export-key", key, passphrase=OPW
    )
    same_tree(world.data, out / "inv")
    assert "Publish on Monday. Call Marta first." in stdout
    assert "Recovered 3 files" in stdout
    assert "chain intact" in stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "AGE-SECRET-KEY-1" in key.read_text()


def test_recover_with_k_minus_one_shares(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    shares = share_subset(world, 1, "one")
    code, _, err = v(
        world.o, "recover", "--shares", shares, "--out", world.tmp / "o", passphrase=OPW
    )
    assert code == 66
    assert "velador: error: only 1 valid share of the 2 needed (1 missing)" in err
    assert not (world.tmp / "o").exists()


def test_recover_skips_corrupt_and_forged_shares(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    files = sorted(world.shares.glob("*.velador-share"))
    d = world.tmp / "mixed"
    d.mkdir()
    for p in files:
        shutil.copy(p, d / p.name)
    # one share file is garbage, one carries an envelope re-signed by another reporter's key
    (d / files[0].name).write_text('{"kind": "velador-share-file", broken')
    doc = json.loads(files[1].read_text())
    from nacl.signing import SigningKey

    forger = SigningKey.generate()
    doc["envelopes"] = [sign_document("envelope", e["body"], forger) for e in doc["envelopes"]]
    (d / files[1].name).write_text(json.dumps(doc))
    code, out, err = v(
        world.o, "recover", "--shares", d, "--out", world.tmp / "out", "--json", passphrase=OPW
    )
    assert code == 0, err
    assert f"velador: warning: skipped share {files[0].name}: " in err
    assert f"velador: warning: skipped share {files[1].name}: " in err
    assert "signed by an unexpected key" in err
    assert "is not valid JSON" in err
    report = json.loads(out)
    assert len(report["shares_used"]) == 2
    assert len(report["shares_skipped"]) == 2
    same_tree(world.data, world.tmp / "out" / "inv")


def test_recover_only_forged_and_one_good_fails(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    files = sorted(world.shares.glob("*.velador-share"))
    d = world.tmp / "few"
    d.mkdir()
    shutil.copy(files[0], d / files[0].name)
    (d / files[1].name).write_text("not json at all")
    code, _, err = v(world.o, "recover", "--shares", d, "--out", world.tmp / "o", passphrase=OPW)
    assert code == 66
    assert f"skipped share {files[1].name}" in err
    assert "only 1 valid share of the 2 needed (1 missing)" in err


def test_recover_refuses_overwrite_without_force(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    shares = share_subset(world, 2, "two")
    out = world.tmp / "out"
    v.ok(world.o, "recover", "--shares", shares, "--out", out, passphrase=OPW)
    (out / "inv" / "a.txt").write_text("edited by outlet")
    code, _, err = v(world.o, "recover", "--shares", shares, "--out", out, passphrase=OPW)
    assert code == 75
    assert "velador: error: refusing to overwrite" in err
    assert "velador: hint: use --force or an empty folder" in err
    assert (out / "inv" / "a.txt").read_text() == "edited by outlet"
    v.ok(world.o, "recover", "--shares", shares, "--out", out, "--force", passphrase=OPW)
    same_tree(world.data, out / "inv")


def test_export_key_refuses_existing_file(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    shares = share_subset(world, 2, "two")
    key = world.tmp / "k.txt"
    key.write_text("keep")
    code, _, err = v(
        world.o,
        "recover",
        "--shares",
        shares,
        "--out",
        world.tmp / "o",
        "--export-key",
        key,
        passphrase=OPW,
    )
    assert code == 75
    assert f"velador: error: {key} already exists" in err
    assert key.read_text() == "keep"


def test_recover_by_someone_not_a_recipient(v, world, homes):
    v.ok(world.r, "deposit", "inv", world.data)
    other = homes("other")
    v.ok(other, "id", "new", "--name", "Other Outlet", "--role", "outlet")
    code, _, err = v(other, "recover", "--shares", world.shares, "--out", world.tmp / "o")
    assert code == 66
    assert "velador: error: none of these shares is addressed to your identity" in err


def test_snapshot_selection_and_merge(v, world):
    first = v.json(world.r, "deposit", "inv", world.data)
    other = world.tmp / "data" / "leaks"
    other.mkdir()
    (other / "memo.txt").write_text("second folder")
    second = v.json(world.r, "deposit", "inv", other)
    assert second["snapshot_id"] != first["snapshot_id"]
    shares = share_subset(world, 2, "two")
    merged = world.tmp / "merged"
    v.ok(world.o, "recover", "--shares", shares, "--out", merged, passphrase=OPW)
    assert sorted(p.name for p in merged.iterdir()) == ["inv", "leaks"]
    same_tree(world.data, merged / "inv")
    same_tree(other, merged / "leaks")
    only = world.tmp / "only"
    report = json.loads(
        v.ok(
            world.o,
            "recover",
            "--shares",
            shares,
            "--out",
            only,
            "--snapshot",
            first["snapshot_id"][:12],
            "--json",
            passphrase=OPW,
        )
    )
    assert sorted(p.name for p in only.iterdir()) == ["inv"]
    assert report["files"] == 3
    code, _, err = v(
        world.o,
        "recover",
        "--shares",
        shares,
        "--out",
        world.tmp / "x",
        "--snapshot",
        "zzzz",
        passphrase=OPW,
    )
    assert code == 66
    assert "velador: error: no single snapshot starts with 'zzzz'" in err


# --- help and documentation ----------------------------------------------------------------


def _walk(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):  # the top group loads its subcommands lazily
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            yield from _walk(sub, (*path, name))


ALL = [(" ".join(p), c) for p, c in _walk(cli)]


@pytest.mark.parametrize(("name", "cmd"), ALL, ids=[n or "velador" for n, _ in ALL])
def test_every_command_has_help(name, cmd):
    assert cmd.help and cmd.help.strip(), f"'{name}' has no docstring"
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert cmd.help.strip().splitlines()[0] in " ".join(result.output.split())


def test_every_option_has_help():
    missing = [
        f"{name} {param.opts[0]}"
        for name, cmd in ALL
        for param in cmd.params
        if isinstance(param, click.Option) and not param.help and param.name != "version"
    ]
    assert missing == []


DOCS = Path(__file__).resolve().parents[2] / "docs"


GUIDES = [
    f"guide-{who}{lang}.md"
    for who in ("reporter", "outlet", "editor", "operator")
    for lang in ("", ".es")
]


def test_every_user_guide_exists_in_english_and_spanish():
    assert [g for g in GUIDES if not (DOCS / g).exists()] == []


@pytest.mark.parametrize("name", [n for n, c in ALL if n and not isinstance(c, click.Group)])
def test_every_command_is_documented(name):
    text = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    assert f"velador {name}" in text, f"'velador {name}' is not mentioned in docs/"


# --- lazy imports (issue 2: start-up time and memory of every command) --------------------------


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported by a fresh interpreter that runs `code`."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    return {m.split(".")[0] for m in out.split()}


HEAVY = {"httpx", "rich", "numpy", "sqlite_utils", "escrow_node", "boto3", "pluggy"}


def test_the_cli_imports_no_heavy_module_before_a_command_is_chosen():
    assert _modules_after("import cli.main") & HEAVY == set()


def test_a_deposit_imports_no_network_client_nor_terminal_tables():
    code = "import cli.main\ncli.main.cli.get_command(None, 'deposit')"
    assert _modules_after(code) & HEAVY == set()


def test_lazy_commands_are_all_listed_and_load():
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"deposit", "recover", "case", "release", "node"} <= set(names)
    assert all(cli.get_command(ctx, n) is not None for n in names)
    release = cli.get_command(ctx, "release")
    assert isinstance(release, click.Group)
    assert {"now", "object", "request"} <= set(release.commands)


def test_recover_timeout_default_is_the_node_client_default():
    from cli.data_cmds import NODE_TIMEOUT
    from vault.netrecover import DEFAULT_TIMEOUT

    assert NODE_TIMEOUT == DEFAULT_TIMEOUT


def test_id_duress_answers_the_same_under_the_duress_passphrase(v, homes, monkeypatch):
    # Finding 3 (a): a captor given the duress passphrase runs `id duress` to set "their own":
    # the answer and exit code are those of a run with the normal passphrase.
    r = homes("duress-id")
    v.ok(r, "id", "new", "--name", "Rita Reporter")
    monkeypatch.setenv("VELADOR_DURESS_PASSPHRASE", "the real duress one")
    normal = v(r, "id", "duress")
    monkeypatch.setenv("VELADOR_DURESS_PASSPHRASE", "the captor's duress one")
    forced = v(r, "id", "duress", passphrase="the real duress one")
    assert forced == normal
    assert normal[0] == 0
    # Both passphrases the captor knows keep working; the real one still unlocks normally.
    for pw in ("the real duress one", "the captor's duress one", PW):
        assert v(r, "id", "show", passphrase=pw)[0] == 0
    from vault.identity import unlock_identity

    assert unlock_identity(r, PW).duress is False
    assert unlock_identity(r, "the captor's duress one").duress is True
