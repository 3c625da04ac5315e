"""`vtr index PATH...`: add videos to a collection, with progress bars and a summary."""

from pathlib import Path
from types import TracebackType
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from api.cli.output import emit, print_table, stderr, stdout
from api.cli.state import state_of
from engine.errors import InputError, NotFoundError
from engine.sources import read_list_file
from index.ingest import IngestResult, ingest


class RichIngestProgress:
    """Two bars on stderr: videos finished, and clips encoded with their rate."""

    def __init__(self) -> None:
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=stderr,
            transient=False,
        )
        self._videos: TaskID | None = None
        self._clips: TaskID | None = None

    def __enter__(self) -> "RichIngestProgress":
        self._bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bars.stop()

    def started(self, n_videos: int, n_todo: int) -> None:
        self._videos = self._bars.add_task("videos", total=n_todo, rate="")
        self._clips = self._bars.add_task("clips ", total=None, rate="")

    def clips_encoded(self, n_clips: int) -> None:
        if self._clips is None:
            return
        self._bars.advance(self._clips, n_clips)
        task = self._bars.tasks[self._clips]
        if task.elapsed:
            self._bars.update(self._clips, rate=f"{task.completed / task.elapsed:.1f} clips/s")

    def video_finished(self, uri: str, status: str, error: str | None) -> None:
        if self._videos is not None:
            self._bars.advance(self._videos)
        if error:
            self._bars.console.print(f"[yellow]failed[/] {uri}: {error}", highlight=False)


def _summary(result: IngestResult) -> None:
    job = result.job
    stdout.print(
        f"job {job.id} {job.status}: {len(result.ready)} indexed, "
        f"{len(result.skipped)} already indexed, {len(result.failed)} failed"
    )
    if result.failed:
        print_table("failed videos", ["file", "error"], result.failed)


def index_videos(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None, typer.Argument(help="Video files, directories or file:// URIs.")
    ] = None,
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Target collection (created if missing).")
    ] = "default",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into subdirectories.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Decoder threads (default: ingest.workers).")
    ] = None,
    list_file: Annotated[
        Path | None, typer.Option("--list", help="A file with one path or URI per line.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Index videos into a collection; rerun after a crash to finish the job."""
    state = state_of(ctx)
    settings = state.settings
    inputs = list(paths or []) + (read_list_file(list_file) if list_file else [])
    if not inputs:
        raise InputError("nothing to index: give paths or --list FILE")
    catalog = state.catalog
    try:
        catalog.get_collection(collection)
    except NotFoundError:
        catalog.create_collection(collection, settings.encoder.name)
        stderr.print(f"created collection {collection} (encoder {settings.encoder.name})")
    if workers is not None:
        settings = settings.model_copy(
            update={"ingest": settings.ingest.model_copy(update={"workers": workers})}
        )
    with RichIngestProgress() as progress:
        result = ingest(
            catalog,
            settings,
            collection,
            inputs,
            recursive=recursive,
            progress=None if as_json else progress,
        )
    emit(as_json, result.to_dict(), lambda: _summary(result))
