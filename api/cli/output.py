"""CLI output: rich tables for people, `--json` for scripts. The only place that prints."""

import json
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON on stdout (plain, no colour codes)."""
    print(json.dumps(data, indent=2, default=str))


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    empty: str = "nothing to show",
) -> None:
    if not rows:
        stdout.print(f"{title}: {empty}")
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    stdout.print(table)


def emit(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    """Print `data` as JSON when `as_json`, else call `render` for the readable form."""
    if as_json:
        print_json(data)
    else:
        render()


def print_error(message: str) -> None:
    """One line on stderr, the CLI's whole answer to a user error."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)


def count_bars(transient: bool = False) -> Progress:
    """Progress bars on stderr: each task's description, bar, done/total and time taken."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=transient,
    )


class CountBar:
    """A "done of total" progress bar on stderr, fed by `update(done, total)` callbacks.

    It appears on the first update, so an error found before the work starts prints
    alone; `enabled=False` (e.g. with --json) shows nothing.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self._label = label
        self._enabled = enabled
        self._bars: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> "CountBar":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def update(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bars is None:
            self._bars = count_bars()
            self._task = self._bars.add_task(self._label, total=total)
            self._bars.start()
        if self._task is not None:
            self._bars.update(self._task, completed=done, total=total)
