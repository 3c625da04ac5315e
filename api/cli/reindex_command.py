"""`vtr reindex`: rebuild a collection's FAISS indexes from the catalog and features."""

from typing import Annotated

import typer

from api.cli.output import CountBar, emit, stdout
from api.cli.state import state_of
from index.reindex import reindex


def reindex_collection(
    ctx: typer.Context,
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Collection to rebuild.")
    ] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rebuild the indexes: after settings changes, or to recover a damaged index."""
    state = state_of(ctx)
    with CountBar("videos", enabled=not as_json) as bar:
        counts = reindex(state.catalog, state.settings, collection, on_video=bar.update)
    emit(
        as_json,
        {"collection": collection, "vectors": counts},
        lambda: stdout.print(
            f"rebuilt {collection}: "
            + (
                ", ".join(f"{level} {n} vectors" for level, n in counts.items())
                or "nothing indexed"
            )
        ),
    )
