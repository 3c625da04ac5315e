"""`vtr encoders`: the encoder table, as `[encoder] name` and collections accept it."""

from dataclasses import asdict
from typing import Annotated

import typer

from api.cli.output import emit, print_table
from engine.encoder_registry import list_encoders


def encoders(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the encoders vtr knows (also accepted: open_clip:ARCH:WEIGHTS, hf:MODEL, vtr:CKPT)."""
    specs = list_encoders()
    emit(
        as_json,
        [asdict(spec) for spec in specs],
        lambda: print_table(
            "encoders",
            ["name", "backend", "architecture", "weights", "description"],
            [(s.name, s.backend, s.arch, s.weights, s.description) for s in specs],
        ),
    )
