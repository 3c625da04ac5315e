"""`vtr collections ...` and `vtr videos ...`: browse and edit the catalog."""

from typing import Annotated

import typer

from api.cli.output import emit, print_table, stdout
from api.cli.state import state_of
from index.catalog import VideoRecord
from index.catalog_schema import VideoStatus

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

collections_app = typer.Typer(help="Create, list and delete collections.", no_args_is_help=True)
videos_app = typer.Typer(help="List, show and delete indexed videos.", no_args_is_help=True)


@collections_app.command("list")
def list_collections(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List collections with their encoder and video count."""
    records = state_of(ctx).catalog.list_collections()
    emit(
        as_json,
        [r.to_dict() for r in records],
        lambda: print_table(
            "collections",
            ["name", "encoder", "videos", "created"],
            [
                (r.name, r.encoder_spec, r.n_videos, f"{r.created_at:%Y-%m-%d %H:%M}")
                for r in records
            ],
            empty="none yet; create one with `vtr collections create NAME`",
        ),
    )


@collections_app.command("create")
def create_collection(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection name (letters, digits, _ . -).")],
    encoder: Annotated[
        str | None, typer.Option(help="Encoder name; default: the config's encoder.name.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an empty collection bound to one encoder."""
    state = state_of(ctx)
    record = state.catalog.create_collection(name, encoder or state.settings.encoder.name)
    emit(
        as_json,
        record.to_dict(),
        lambda: stdout.print(f"created collection {record.name} (encoder {record.encoder_spec})"),
    )


@collections_app.command("delete")
def delete_collection(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection to delete, with all its videos.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a collection and everything indexed in it."""
    record = state_of(ctx).catalog.delete_collection(name)
    emit(
        as_json,
        record.to_dict(),
        lambda: stdout.print(f"deleted collection {record.name} ({record.n_videos} videos)"),
    )


def _video_rows(records: list[VideoRecord]) -> list[tuple[object, ...]]:
    return [
        (
            r.id,
            r.uri,
            r.status,
            f"{r.duration_s:.1f}" if r.duration_s is not None else None,
            r.n_clips,
            r.error,
        )
        for r in records
    ]


@videos_app.command("list")
def list_videos(
    ctx: typer.Context,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    status: Annotated[VideoStatus | None, typer.Option(help="Only videos in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many videos.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many videos first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List videos with their status, duration and error, if any."""
    records = state_of(ctx).catalog.list_videos(collection, status, limit, offset)
    emit(
        as_json,
        [r.to_dict() for r in records],
        lambda: print_table(
            "videos", ["id", "uri", "status", "duration s", "clips", "error"], _video_rows(records)
        ),
    )


@videos_app.command("show")
def show_video(
    ctx: typer.Context,
    video_id: Annotated[int, typer.Argument(help="Video id, as `vtr videos list` shows.")],
    as_json: JsonOption = False,
) -> None:
    """Show everything the catalog knows about one video."""
    record = state_of(ctx).catalog.get_video(video_id)
    emit(
        as_json,
        record.to_dict(),
        lambda: print_table(
            f"video {record.id}", ["field", "value"], list(record.to_dict().items())
        ),
    )


@videos_app.command("delete")
def delete_video(
    ctx: typer.Context,
    video_id: Annotated[int, typer.Argument(help="Video id to delete.")],
    as_json: JsonOption = False,
) -> None:
    """Delete one video and its segments."""
    record = state_of(ctx).catalog.delete_video(video_id)
    emit(
        as_json, record.to_dict(), lambda: stdout.print(f"deleted video {record.id} ({record.uri})")
    )
