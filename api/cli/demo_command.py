"""`vtr demo`: the main job end to end on an embedded default corpus, in its own data dir."""

import shutil
from pathlib import Path
from typing import Annotated

import typer

from api.cli.output import print_table, stdout
from api.cli.state import state_of
from index.catalog import Catalog


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its catalog and files (recreated).")
    ] = Path("demo-data"),
) -> None:
    """Create a fresh demo catalog and collection, then list what it holds."""
    settings = state_of(ctx).settings
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    url = f"sqlite:///{data_dir.resolve() / 'vtr.db'}"
    catalog = Catalog.initialise(url)
    stdout.print(f"[1/2] catalog created at {data_dir / 'vtr.db'}")
    collection = catalog.create_collection("demo", settings.encoder.name)
    stdout.print(f"[2/2] collection {collection.name} created")
    records = catalog.list_collections()
    print_table(
        "collections",
        ["name", "encoder", "videos"],
        [(r.name, r.encoder_spec, r.n_videos) for r in records],
    )
    catalog.close()
