"""`vtr export features`: a collection's clip features in the Moment-DETR npz layout.

Writes `<out>/<video file stem>.npz` with key `features` (clips, dim) float32, one row
per clip — the layout `vtr train localizer --features` and Moment-DETR-style code read.
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from api.cli.output import emit, stdout
from api.cli.state import state_of
from engine.errors import ConflictError, InputError
from index.collection_index import ready_video_features

export_app = typer.Typer(help="Export indexed data in standard layouts.", no_args_is_help=True)


@export_app.command("features")
def export_features(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Directory for the {video}.npz files.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write every ready video's clip features as {file stem}.npz (key `features`)."""
    state = state_of(ctx)
    record = state.catalog.get_collection(collection)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    dim = 0
    for video, clips in ready_video_features(
        state.catalog, state.settings.storage.data_dir, record
    ):
        stem = Path(video.uri).stem
        if stem in written:
            raise ConflictError(f"two videos share the file name {stem!r}; cannot export")
        np.savez(out / f"{stem}.npz", features=clips)
        written[stem], dim = len(clips), clips.shape[1]
    if not written:
        raise InputError(f"collection {collection!r} has no indexed videos")
    emit(
        as_json,
        {"collection": collection, "out": str(out), "videos": len(written), "dim": dim},
        lambda: stdout.print(f"wrote {len(written)} feature files ({dim}-d) to {out}"),
    )
