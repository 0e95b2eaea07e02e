"""`velador verify --repair` (issue 12, item 4): a damaged copy found by `verify --deep` is put
back from a healthy replica, checked by hash before it is copied; with no healthy replica, the
command says so and `--from` makes the objects again from the reporter's files. Recovery from
the repaired store alone proves the repair."""

from __future__ import annotations

from .test_cli import OPW, same_tree, share_subset, v, world

__all__ = ["v", "world"]


def objects(store, case_id):
    return sorted(p for p in (store / case_id / "objects").rglob("*") if p.is_file())


def flip(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size: only a hash finds it
    path.write_bytes(bytes(raw))


def test_repair_from_healthy_replica_then_recover_from_that_store_alone(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    a, b = world.stores
    victim = max(objects(b, world.case_id), key=lambda p: p.stat().st_size)
    key = str(victim.relative_to(b))
    good = (a / key).read_bytes()
    flip(victim)
    code, _, err = v(world.r, "verify", "inv", "--deep")
    assert code == 74 and f"damaged  file://{b}: {key}" in err
    assert "velador: hint: repair them from a healthy replica: velador verify inv --repair" in err
    # Missing in store A, damaged in store B: both are put back from the other store.
    other = next(p for p in objects(a, world.case_id) if p.name != victim.name)
    other_key = str(other.relative_to(a))
    other.unlink()
    code, _, err = v(world.r, "verify", "inv", "--repair")
    assert code == 0, err
    assert f"repaired  file://{b}: {key} (from file://{a})" in err
    assert f"repaired  file://{a}: {other_key} (from file://{b})" in err
    assert "OK: every store of inv holds a good copy of all" in err
    assert (b / key).read_bytes() == good
    code, _, err = v(world.r, "verify", "inv", "--deep")
    assert code == 0, err
    # Recovery reading only the repaired store B gives back every byte.
    out = world.tmp / "out"
    shares = share_subset(world, 2, "two")
    v.ok(
        world.o,
        "recover",
        "--shares",
        shares,
        "--out",
        out,
        "--store",
        f"file://{b}",
        passphrase=OPW,
    )
    same_tree(world.data, out / "inv")


def test_no_healthy_replica_needs_the_files_then_from_repairs(v, world):
    v.ok(world.r, "deposit", "inv", world.data)
    a, b = world.stores
    victim = max(objects(a, world.case_id), key=lambda p: p.stat().st_size)
    key = str(victim.relative_to(a))
    flip(victim)
    flip(b / key)
    # No store holds a good copy: a replica is checked before it is copied, so nothing is spread.
    code, _, err = v(world.r, "verify", "inv", "--repair")
    assert code == 74, err
    assert f"not repaired  file://{a}: {key}" in err
    assert "velador: error: 1 object(s) have no intact copy in any store" in err
    assert "velador verify inv --repair --from FOLDER" in err
    # With the folder that was deposited, the object is made again and uploaded.
    code, _, err = v(world.r, "verify", "inv", "--repair", "--from", world.data)
    assert code == 0, err
    assert "1 made again from your files" in err
    assert v(world.r, "verify", "inv", "--deep")[0] == 0
    out = world.tmp / "out"
    shares = share_subset(world, 2, "two")
    v.ok(
        world.o,
        "recover",
        "--shares",
        shares,
        "--out",
        out,
        "--store",
        f"file://{a}",
        passphrase=OPW,
    )
    same_tree(world.data, out / "inv")
