"""`velador ui` as a person starts it: a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parents[2]


def test_velador_ui_prints_a_one_time_link_and_logs_no_secret(tmp_path):
    env = dict(os.environ, VELADOR_LANG="es")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--home", str(tmp_path / "h"), "ui", "--no-browser"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "sirve una sola vez" in first  # Spanish first
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/open?token=" in url
        token = url.split("token=")[1]
        base = url.split("/open")[0]
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.get(url, follow_redirects=True)  # on to the welcome page
            assert r.status_code == 200 and "Bienvenida" in r.text
            assert c.get(url).status_code == 403  # spent
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert "GET /open 303" in err  # the server's log, with paths only
    assert token not in err and "token=" not in err


def test_every_page_message_has_spanish():
    """The templates' messages are in the catalog with Spanish text (the catalog test of
    tests/cli/test_i18n.py reads only Python files)."""
    ids = {
        m[2]
        for m in extract_from_dir(
            REPO / "cli" / "ui" / "templates",
            method_map=[("**.html", "jinja2")],
            options_map={"**.html": {"extensions": "jinja2.ext.i18n"}},
        )
    }
    assert len(ids) > 50
    po = REPO / "cli" / "locale" / "es_MX" / "LC_MESSAGES" / "velador.po"
    with open(po, "rb") as fh:
        cat = {m.id: m.string for m in read_po(fh, locale="es_MX") if m.id}
    missing = sorted(i for i in ids if not cat.get(i))
    assert not missing, missing
