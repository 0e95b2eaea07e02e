"""The age engines side by side: pyrage, vault/agev1.py (cryptography) and the stock `age` binary.

Issue 14, "The age engine": pyrage's per-byte cost was the largest single cost of a deposit and a
recovery (docs/decisions.md (11)). This prints, for encryption and decryption of the same random
data in one run, the CPU seconds per GB and the throughput of:

- pyrage, object by object (1 MiB objects, the average chunk: the hot path of deposit/recover),
- the engine, object by object, through the calls vault/objects.py makes (`encrypt_to` into a
  sink as a deposit worker does, `open_file(...).decrypt_into` a preallocated buffer as a
  recovery worker does),
- `age -e` / `age -d` over the whole data as one file in /dev/shm (what a reporter would pipe).

Then whether each engine releases the GIL, measured, not guessed: while one thread makes a
single large call, a second thread counts how many times it gets to run Python code. A call that
holds the GIL starves the counter; one that releases it lets the counter run on the other core.
hashlib.sha256 (documented to release the GIL on large inputs) is the control. Finally threads
against one thread for the engine's object encryption (what vault/parallel.py would get from
threads instead of processes).

Best of --repeat runs (the machine is shared; CPU seconds hardly depend on the load, wall time
does). Asserts nothing.

Run: .venv/bin/python bench/age_engine.py [--mib 256] [--object-mib 1] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyrage
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from pyrage import x25519

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from deposit import load, machine

from vault import agev1

MIB = 1024 * 1024


class _Null:
    """A sink that only counts (the staged-file writes are not what is measured here)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes | memoryview) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(fn: Callable[[], object], nbytes: int, repeat: int, child: bool = False) -> dict:
    """Best wall time and least CPU time of `repeat` runs of fn, as MB/s and CPU s/GB."""
    walls, cpus = [], []
    clock = _child_cpu if child else _cpu
    for _ in range(repeat):
        c0, t0 = clock(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(clock() - c0)
    return {
        "mb_s": round(nbytes / min(walls) / 1e6, 1),
        "cpu_s_per_gb": round(min(cpus) / nbytes * 1e9, 3),
    }


def gil_probe(call: Callable[[], object]) -> dict:
    """Run `call` in a thread while this thread counts in a Python loop (which needs the GIL).

    Returns the call's duration, the CPU time the counter got during the call as a fraction of
    the call's own CPU time, and the longest the counter waited between two turns. A call that
    holds the GIL leaves the counter blocked (ratio near 0, a wait as long as the call); one that
    releases it lets the counter run beside it on the other core (ratio near 1). CPU time rather
    than wall time, so that a loaded machine does not change the answer."""
    done = threading.Event()
    took: list[float] = []

    def run() -> None:
        c0, t0 = time.thread_time(), time.perf_counter()
        call()
        took.extend([time.perf_counter() - t0, time.thread_time() - c0])
        done.set()

    th = threading.Thread(target=run)
    gap = 0.0
    c0 = time.thread_time()
    last = time.perf_counter()
    th.start()
    while not done.is_set():
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
    counter_cpu = time.thread_time() - c0
    th.join()
    return {
        "call_s": round(took[0], 3),
        "counter_cpu_ratio": round(counter_cpu / max(took[1], 1e-9), 3),
        "longest_wait_s": round(gap, 3),
    }


def threads_vs_one(objects: list[bytes], recipient: agev1.Recipient, repeat: int) -> dict:
    """The engine's object encryption on 1 and 2 threads: wall MB/s and CPU/wall (2 = both
    cores busy)."""
    total = sum(len(o) for o in objects)
    out = {}
    for jobs in (1, 2):
        walls, ratios = [], []
        for _ in range(repeat):
            c0, t0 = _cpu(), time.perf_counter()
            with ThreadPoolExecutor(jobs) as ex:
                list(ex.map(lambda o: agev1.encrypt_to(o, [recipient], _Null()), objects))
            wall = time.perf_counter() - t0
            walls.append(wall)
            ratios.append((_cpu() - c0) / wall)
        out[f"threads_{jobs}"] = {
            "mb_s": round(total / min(walls) / 1e6, 1),
            "cpu_per_wall": round(max(ratios), 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="data size (default 256 MiB)")
    ap.add_argument("--object-mib", type=float, default=1.0, help="object size (default 1 MiB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    age = shutil.which("age")
    if age is None:
        sys.exit("age_engine: the stock `age` binary is missing (Debian package `age`)")

    size = args.mib * MIB
    obj = int(args.object_mib * MIB)
    data = os.urandom(size)
    objects = [data[i : i + obj] for i in range(0, size, obj)]
    ident = x25519.Identity.generate()
    rec_str = str(ident.to_public())
    p_rec = x25519.Recipient.from_str(rec_str)
    e_ident = agev1.Identity.from_str(str(ident))
    e_rec = agev1.Recipient.from_str(rec_str)
    print(
        f"# age engines: {args.mib} MiB random, {args.object_mib:g} MiB objects, "
        f"best of {args.repeat}; load {load()}",
        flush=True,
    )

    results: dict = {"machine": machine(), "mib": args.mib, "object_mib": args.object_mib}
    p_ct = [pyrage.encrypt(o, [p_rec]) for o in objects]
    e_ct = [bytes(agev1.encrypt(o, [e_rec])) for o in objects]

    def pyrage_dec() -> None:
        for c, o in zip(p_ct, objects, strict=True):
            pyrage.decrypt_io(io.BytesIO(c), _Null(), [ident])
            del o

    def engine_dec() -> None:
        for c, o in zip(e_ct, objects, strict=True):
            opened = agev1.open_file(c, [e_ident])
            opened.decrypt_into(bytearray(len(o)))
            opened.release()

    results["pyrage"] = {
        "encrypt": measure(
            lambda: [pyrage.encrypt_io(io.BytesIO(o), _Null(), [p_rec]) for o in objects],
            size,
            args.repeat,
        ),
        "decrypt": measure(pyrage_dec, size, args.repeat),
    }
    results["engine"] = {
        "encrypt": measure(
            lambda: [agev1.encrypt_to(o, [e_rec], _Null()) for o in objects], size, args.repeat
        ),
        "decrypt": measure(engine_dec, size, args.repeat),
    }
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        plain, enc, keyf = Path(d, "plain"), Path(d, "plain.age"), Path(d, "key.txt")
        plain.write_bytes(data)
        fd = os.open(keyf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, f"{ident}\n".encode())
        os.close(fd)
        out = Path(d, "out")
        results["age"] = {
            "encrypt": measure(
                lambda: subprocess.run(
                    [age, "-e", "-r", rec_str, "-o", str(enc), str(plain)], check=True
                ),
                size,
                args.repeat,
                child=True,
            ),
            "decrypt": measure(
                lambda: subprocess.run(
                    [age, "-d", "-i", str(keyf), "-o", str(out), str(enc)], check=True
                ),
                size,
                args.repeat,
                child=True,
            ),
        }
    del data

    big = os.urandom(128 * MIB)
    big_ct = bytes(agev1.encrypt(big, [e_rec]))
    big_opened = agev1.open_file(big_ct, [e_ident])
    aead = ChaCha20Poly1305(os.urandom(32))
    sealed = aead.encrypt(bytes(12), big, None)
    sealed_buf = bytearray(len(sealed))  # preallocated and touched, as the engine's buffers
    plain_buf = bytearray(len(big))
    results["gil"] = {
        "hashlib.sha256 (control)": gil_probe(lambda: hashlib.sha256(big).digest()),
        "pyrage.encrypt": gil_probe(lambda: pyrage.encrypt(big, [p_rec])),
        "ChaCha20Poly1305.encrypt": gil_probe(lambda: aead.encrypt(bytes(12), big, None)),
        "ChaCha20Poly1305.encrypt_into": gil_probe(
            lambda: aead.encrypt_into(bytes(12), big, None, sealed_buf)
        ),
        "ChaCha20Poly1305.decrypt_into": gil_probe(
            lambda: aead.decrypt_into(bytes(12), sealed, None, plain_buf)
        ),
        "engine encrypt (64 KiB calls)": gil_probe(lambda: agev1.encrypt(big, [e_rec])),
        "engine decrypt (64 KiB calls)": gil_probe(lambda: big_opened.decrypt()),
    }
    results["engine_threads"] = threads_vs_one(objects, e_rec, args.repeat)
    results["load_after"] = load()

    print(f"\n{'':10} {'encrypt MB/s':>13} {'CPU s/GB':>9} {'decrypt MB/s':>13} {'CPU s/GB':>9}")
    for name in ("pyrage", "engine", "age"):
        r = results[name]
        print(
            f"{name:10} {r['encrypt']['mb_s']:>13} {r['encrypt']['cpu_s_per_gb']:>9} "
            f"{r['decrypt']['mb_s']:>13} {r['decrypt']['cpu_s_per_gb']:>9}"
        )
    print("\nGIL probe: one 128 MiB call in a thread beside a Python counter; the counter's CPU")
    print("time during the call over the call's (near 0: the call held the GIL; near 1: released)")
    print("and the counter's longest wait (as long as the call: held)")
    for name, r in results["gil"].items():
        print(
            f"  {name:32} call {r['call_s']:.3f} s  counter CPU ratio {r['counter_cpu_ratio']:<6} "
            f"longest wait {r['longest_wait_s']:.3f} s"
        )
    t = results["engine_threads"]
    print(
        f"\nengine encrypt, objects on threads: 1 thread {t['threads_1']['mb_s']} MB/s "
        f"(CPU/wall {t['threads_1']['cpu_per_wall']}), 2 threads {t['threads_2']['mb_s']} MB/s "
        f"(CPU/wall {t['threads_2']['cpu_per_wall']})"
    )
    print(f"load after: {results['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
