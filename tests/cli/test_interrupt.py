"""Ctrl-C during a deposit (issue 12, item 9): the command says that running it again resumes,
exits 130, and running it again completes; the progress bar (drawn on stderr) and the summary
count in the same binary units. The real `velador` process on a pseudo-terminal, SIGINT sent
once the bar shows the upload under way (polled, never a guessed sleep)."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .test_cli import PW, v, world

__all__ = ["v", "world"]
REPO = Path(__file__).resolve().parents[2]
UNDER_WAY = re.compile(rb"(\d+(?:\.\d)?)/(\d+(?:\.\d)?) MiB")


def run_on_pty(home: Path, args: list[str], interrupt: bool) -> tuple[int, bytes, bytes]:
    """Run velador with stderr on a pseudo-terminal (so the bar is drawn); SIGINT it once the
    bar shows some but not all bytes, and a rate. Returns (exit code, stdout, terminal output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--home", str(home), *args],
        # SIGINT at its default, as in a terminal: a test run started in the background (CI,
        # nohup) hands SIGINT down ignored, and the deposit then never sees the Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=dict(os.environ, VELADOR_PASSPHRASE=PW),
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    sent = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        m = UNDER_WAY.findall(seen)
        under_way = m and 0 < float(m[-1][0]) < float(m[-1][1]) and b"MiB/s" in seen
        if interrupt and not sent and under_way:
            proc.send_signal(signal.SIGINT)
            sent = True
    out = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(60)
    os.close(master)
    if proc.stdout:
        proc.stdout.close()
    assert not interrupt or sent, seen[-500:]
    return code, out, seen


def test_ctrl_c_during_deposit_says_run_again_then_resumes(v, world):
    # Large enough that the deposit is still running when its progress shows a speed, even on
    # a fast moment of the machine (160 MiB once finished in under a second).
    (world.data / "big.bin").write_bytes(os.urandom(512 * 1024 * 1024))
    code, out, term = run_on_pty(world.r, ["deposit", "inv", str(world.data)], interrupt=True)
    text = term.decode(errors="replace")
    assert code == 130, text[-800:]
    assert "velador: error: deposit interrupted; what was already uploaded is kept" in text
    assert (
        "velador: hint: run the same command again: it resumes and uploads only what is missing"
    ) in text
    assert "Traceback" not in text
    assert out == b""  # the bar is drawn on stderr, never on stdout
    # The bar counts in MiB, as the summary does; never decimal MB.
    assert b" MB" not in term and b"MiB/s" in term
    # Run again: it completes, and every store holds everything.
    code, out, term = run_on_pty(world.r, ["deposit", "inv", str(world.data)], interrupt=False)
    text = term.decode(errors="replace")
    assert code == 0, text[-800:]
    assert re.search(r"Snapshot 1 \(\w+\): 4 files, 512\.3 MiB; read 512\.3 MiB", text), text
    assert v(world.r, "verify", "inv")[0] == 0


def test_ctrl_c_at_any_prompt_says_interrupted_not_aborted(tmp_path, monkeypatch, capsys):
    # click turns a KeyboardInterrupt into Abort outside standalone mode, so the CLI used to say
    # "aborted" for every Ctrl-C (review of issue 12): it now says it was interrupted.
    import pytest as _pytest

    from cli import id_cmds, main
    from vault.identity import create_identity

    create_identity(tmp_path, "Ana", "reporter", "una frase de paso larga 1", 0)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(id_cmds, "get_passphrase", interrupted)
    with _pytest.raises(SystemExit) as e:
        main.main(["--home", str(tmp_path), "id", "duress"])
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "velador: error: interrupted" in err
    assert "aborted" not in err
