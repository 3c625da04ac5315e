"""CLI output: rich tables for people, `--json` for scripts. The only place that prints."""

import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
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
