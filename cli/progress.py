"""A rich progress bar on a terminal (bytes, rate, ETA); silent in pipes and with --json.

The bar is drawn on stderr (the terminal this module checks), never on stdout, which scripts
read; and it counts in binary units (KiB, MiB), the units of the summary a deposit or a recovery
prints when it ends (cli/data_cmds.py `_human`), so both give the same number for the same size.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def human_bytes(n: int) -> str:
    """Binary units, as the bar shows them: 512 B, 3.9 KiB, 286.1 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@contextmanager
def byte_progress(label: str, quiet: bool = False) -> Iterator[Callable[[int, int], None] | None]:
    if quiet or not sys.stderr.isatty():
        yield None
        return
    # Imported here: scripts and --json runs never draw a bar and need not load rich.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
    )

    speed = _speed_column()  # a class made on first use, so that rich loads lazily
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        speed(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _speed_column() -> type:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class BinarySpeed(ProgressColumn):
        """rich's TransferSpeedColumn counts in decimal MB/s; this one in MiB/s like the rest."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("?", style="progress.data.speed")
            return Text(f"{human_bytes(int(speed))}/s", style="progress.data.speed")

    return BinarySpeed
