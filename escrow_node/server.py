"""`velador node serve`: uvicorn and the engine in one process (docs/guide-operator.md §5).

Stopping. uvicorn installs the SIGTERM/SIGINT handlers: it stops accepting connections,
finishes the requests in flight, then runs the lifespan shutdown (app.py), which stops the
scheduler, waits at most SHUTDOWN_GRACE seconds for deliveries and peer syncs in flight, and closes
the database. A delivery or sync still waiting on another machine then is left behind: the
process exits without joining its thread (`_exit`), and the work is redone after the next start
(an undelivered outbox row stays due; a case whose sync did not commit keeps its wake-up in the
past). Without this a dripping webhook or a mail server that never greets held a stopping node
for a whole timeout, and service managers resort to SIGKILL. Every state change was committed
before its answer, so even SIGKILL loses nothing that was acknowledged.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import uvicorn

from vault.clock import Clock, SystemClock
from vault.identity import unlock_identity

from .app import create_app
from .config import load_config, read_passphrase
from .datalock import lock_data_dir
from .errors import ConfigError
from .testclock import TEST_CLOCK_ENV, FileClock, test_clock_allowed

log = logging.getLogger("velador.node")


def serve(
    data_dir: Path,
    host: str | None = None,
    port: int | None = None,
    tick: float | None = None,
    test_clock_file: Path | None = None,
    log_level: str = "info",
) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # httpx logs every request URL at INFO: webhook URLs often carry secret tokens, and logs are
    # kept and shipped longer than the database (protocol §8.5: no address in logs).
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = load_config(data_dir).with_overrides(host=host, port=port, tick=tick)
    lock_data_dir(data_dir)  # before the database is opened: one process per folder
    clock: Clock = SystemClock()
    if test_clock_file is not None:
        if not test_clock_allowed():
            raise ConfigError(
                "--test-clock-file is for tests only",
                hint=f"it also needs the environment variable {TEST_CLOCK_ENV}=1",
            )
        clock = FileClock(test_clock_file)
        log.warning("!" * 72)
        log.warning(
            "TEST CLOCK IN USE (%s): time comes from a file. NEVER IN PRODUCTION.", test_clock_file
        )
        log.warning("!" * 72)
    identity = unlock_identity(data_dir, read_passphrase(config))
    if identity.role != "node":
        raise ConfigError(f"the identity in {data_dir} is not a node identity")
    app = create_app(config, identity, clock, test_clock=test_clock_file is not None)
    log.info(
        "node %s (%s) listening on %s:%d",
        config.name,
        identity.fingerprint,
        config.host,
        config.port,
    )
    uv = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
        # The node never reads client addresses (limits are per signing key), so uvicorn's
        # X-Forwarded-For rewriting would only be per-request work.
        proxy_headers=False,
    )
    # uvicorn re-raises the signal that stopped it once shutdown is complete; with these
    # handlers in place SIGTERM becomes exit status 0, which service managers read as a clean
    # stop, and SIGINT (Ctrl-C) 130.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    uvicorn.Server(uv).run()


def _exit_cleanly(signum: int, frame: object) -> None:
    code = 0 if signum == signal.SIGTERM else 128 + signum
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        # A delivery or peer sync left behind at shutdown (see "Stopping" above): exiting
        # normally would join its thread and wait out its timeout.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
