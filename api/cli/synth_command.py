"""`vtr synth`: generate the synthetic benchmark corpus (videos + QVHighlights annotations).

    vtr synth --videos 50 --out synth --seed 0
    vtr synth --videos 200 --out heldout --seed 1 --heldout-phrasing --workers 2 --json

Writes DIR/videos/<vid>.mp4, DIR/annotations.jsonl and DIR/world.json (engine.synth).
"""

import re
from pathlib import Path
from typing import Annotated

import typer

from api.cli.output import CountBar, emit, stdout
from engine.errors import InputError
from engine.synth import CorpusManifest, generate_corpus

SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    match = SIZE.match(text.strip().lower())
    if match is None:
        raise InputError(f"--size must look like 128x96, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _summary(manifest: CorpusManifest) -> None:
    stdout.print(
        f"wrote {len(manifest.videos)} videos ({manifest.video_seconds / 60:.1f} min) and "
        f"{len(manifest.plan.queries)} queries to {manifest.out_dir} in "
        f"{manifest.render_seconds:.1f} s ({manifest.seconds_per_video_minute:.2f} s per "
        f"video-minute, {manifest.workers} worker{'s' if manifest.workers > 1 else ''})",
        highlight=False,
    )
    stdout.print(f"annotations: {manifest.annotations_path}", highlight=False)


def synth(
    videos: Annotated[int, typer.Option("--videos", min=1, help="How many videos.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same corpus.")
    ] = 0,
    min_seconds: Annotated[float, typer.Option("--min-seconds", help="Shortest video (s).")] = 20.0,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Longest video (s).")] = 180.0,
    heldout_phrasing: Annotated[
        bool,
        typer.Option(
            "--heldout-phrasing", help="Word queries with the held-out templates and verbs."
        ),
    ] = False,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 8.0,
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT (even numbers).")] = "128x96",
    workers: Annotated[int, typer.Option(min=1, help="Render videos in this many processes.")] = 1,
    queries_per_minute: Annotated[
        float,
        typer.Option("--queries-per-minute", help="Queries per minute of video (>= 1 per video)."),
    ] = 1.2,
    first_qid: Annotated[
        int,
        typer.Option(
            "--first-qid", min=0, help="First query id (give corpora to combine distinct ranges)."
        ),
    ] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a corpus already in --out.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate a synthetic video corpus with exact moment annotations."""
    width, height = parse_size(size)
    with CountBar("videos", enabled=not as_json) as bar:
        manifest = generate_corpus(
            out,
            videos,
            seed,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            fps=fps,
            size=(width, height),
            heldout_phrasing=heldout_phrasing,
            queries_per_minute=queries_per_minute,
            first_qid=first_qid,
            workers=workers,
            overwrite=overwrite,
            progress=bar.update,
        )
    emit(as_json, manifest.to_dict(), lambda: _summary(manifest))
