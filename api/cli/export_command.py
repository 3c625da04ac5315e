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
from engine.feature_store import FeatureStore
from index.catalog_schema import VideoStatus
from index.collection_index import features_dir

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
    catalog = state.catalog
    record = catalog.get_collection(collection)
    root = features_dir(state.settings.storage.data_dir, record.id)
    dim = FeatureStore.stored_dim(root)
    if dim is None:
        raise InputError(f"collection {collection!r} has no indexed videos")
    store = FeatureStore.open(root, dim)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    offset = 0
    while videos := catalog.list_videos(collection, VideoStatus.READY, 500, offset):
        offset += len(videos)
        for video in videos:
            stem = Path(video.uri).stem
            if stem in written:
                raise ConflictError(f"two videos share the file name {stem!r}; cannot export")
            clips = np.asarray(store.read(catalog.feature_address(video.id)), dtype=np.float32)
            np.savez(out / f"{stem}.npz", features=clips)
            written[stem] = len(clips)
    emit(
        as_json,
        {"collection": collection, "out": str(out), "videos": len(written), "dim": dim},
        lambda: stdout.print(f"wrote {len(written)} feature files ({dim}-d) to {out}"),
    )
