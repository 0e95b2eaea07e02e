"""Worker threads against worker processes (vault/parallel.py, docs/decisions.md (8)).

Two parts, printed; asserts nothing:

  * a GIL probe: while one thread is inside one long call of each hot-path library (ChaCha20-
    Poly1305 through `cryptography`, blake3, zstd, os.pread), does another thread run Python?
    If it does, the call released the GIL and worker threads can use a second core;
  * a deposit and a recovery of the bench/peers.py tree in each mode (VELADOR_WORKERS), the modes
    alternating run by run (the machine may be shared): seconds, CPU seconds (user + system,
    worker processes included) and the peak RSS of the whole process tree.

Run: .venv/bin/python bench/workers.py [--size-mib 256] [--rounds 2] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from deposit import CPU, VELADOR, flush, load, recover_cmd, run, set_up  # noqa: E402
from peers import make_tree, same_tree  # noqa: E402


def _spin(steps: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        steps[0] += 1


def gil_probe(path: Path) -> None:
    import blake3
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    big = os.urandom(64 << 20)
    text = (b"2026-03-14,Sinaloa,transferencia obra,123.45,F000000001,pagado\n" * 1_100_000)[
        : 64 << 20
    ]
    out = bytearray(len(big) + 16)
    aead = ChaCha20Poly1305(os.urandom(32))
    path.write_bytes(big)
    fd = os.open(path, os.O_RDONLY)
    calls = {
        "ChaCha20Poly1305.encrypt_into": lambda: aead.encrypt_into(bytes(12), big, None, out),
        "blake3": lambda: blake3.blake3(big).digest(),
        "zstd level 1 (text)": lambda: zstandard.ZstdCompressor(level=1).compress(text),
        "os.pread": lambda: os.pread(fd, 64 << 20, 0),
    }
    for name, call in calls.items():
        steps = [0]
        stop = threading.Event()

        t = threading.Thread(target=_spin, args=(steps, stop))
        t.start()
        time.sleep(0.05)
        before, start = steps[0], time.perf_counter()
        call()
        took, during = time.perf_counter() - start, steps[0] - before
        stop.set()
        t.join()
        print(
            f"GIL probe: {name:32s} {took * 1e3:6.1f} ms; another thread ran {during:>9,d} loop "
            f"steps meanwhile ({'released' if during > 1000 else 'HELD'})"
        )
    os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="deposit + recovery runs per mode")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="velador-workers-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VELADOR_PASSPHRASE="bench run passphrase", VELADOR_INSECURE_FAST_KDF="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    try:
        gil_probe(root / "probe.bin")
        src = root / "expediente"
        make_tree(src, args.size_mib)
        modes = ["threads", "processes"]
        cases = [f"w{i}" for i in range(2 * args.rounds)]
        set_up(root, cases, env)
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                case = cases.pop()
                menv = dict(env, VELADOR_WORKERS=mode)
                flush(root)
                before = load()
                dep = run([VELADOR, "--home", str(root / "rep"), "deposit", case, str(src)], menv)
                dep_cpu = CPU.pop(id(dep))
                out = root / "out"
                flush(root)
                rec = run(recover_cmd(root, case, out), menv)
                rec_cpu = CPU.pop(id(rec))
                same = same_tree(src, out / src.name)
                shutil.rmtree(out)
                print(
                    f"{args.size_mib} MiB {mode:9s} deposit {dep[0]:6.2f} s {dep_cpu:5.2f} CPU s "
                    f"{dep[1]:4d} MiB | recover {rec[0]:6.2f} s {rec_cpu:5.2f} CPU s "
                    f"{rec[1]:4d} MiB | identical {same} | load {before}",
                    flush=True,
                )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
