"""`vtr demo`: the main job end to end on a generated corpus, in its own data directory.

1. generates a corpus of videos with known moments (`vtr synth`),
2. indexes it (`vtr index`),
3. runs a handful of its queries and prints the top moments beside the ground truth,
4. evaluates every query through the two-stage search (`vtr eval corpus`).
It uses vtr's own small encoder trained on the generated world (`vtr-synth-s4`) with its
trained level heads and the span localizer on those heads (the best second stage
measured on held-out generated videos, README); without the encoder it says so and runs
the same steps with the random-weight test encoder and the similarity localizer, whose
scores then mean nothing. Everything is left in `--data-dir`.
"""

import shutil
from pathlib import Path
from typing import Annotated

import typer

from api.cli.index_command import RichIngestProgress
from api.cli.output import CountBar, print_table, stderr, stdout
from api.cli.search_command import mmss
from api.cli.state import state_of
from api.corpus_eval import CorpusEvalOptions, evaluate_collection
from api.search import MomentResult, SearchRequest, SearchService
from engine.config import Settings
from engine.encoder_registry import list_encoders
from engine.synth import generate_corpus
from index.catalog import Catalog
from index.ingest import ingest
from localize.annotations import load_qvhighlights

TRAINED_ENCODER = "vtr-synth-s4"
UNTRAINED_ENCODER = "tiny-random"
COLLECTION = "demo"
SHOWN_QUERIES = 5


def _demo_settings(base: Settings, data_dir: Path, encoder: str) -> Settings:
    trained = encoder == TRAINED_ENCODER
    # the trained heads' spans (the best measured second stage), or the training-free
    # curve for random weights
    localizer = base.localizer.model_copy(update={"name": "spans" if trained else "similarity"})
    strategy = "trained" if trained else base.levels.strategy
    return base.model_copy(
        update={
            "levels": base.levels.model_copy(update={"strategy": strategy}),
            "storage": base.storage.model_copy(update={"data_dir": data_dir.resolve() / "data"}),
            "catalog": base.catalog.model_copy(update={"url": ""}),
            "encoder": base.encoder.model_copy(update={"name": encoder}),
            "search": base.search.model_copy(update={"default_collection": COLLECTION}),
            "localizer": localizer,
        }
    )


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its corpus, catalog and indexes (recreated).")
    ] = Path("demo-data"),
    videos: Annotated[int, typer.Option(min=2, help="Videos to generate.")] = 50,
    seed: Annotated[int, typer.Option(help="Corpus seed.")] = 2026,
    encoder: Annotated[
        str | None, typer.Option(help=f"Encoder (default: {TRAINED_ENCODER} when shipped).")
    ] = None,
) -> None:
    """Generate a corpus, index it, search it and score the results."""
    if encoder is None:
        shipped = {s.name for s in list_encoders() if Path(s.weights).is_file()}
        encoder = TRAINED_ENCODER if TRAINED_ENCODER in shipped else UNTRAINED_ENCODER
        if encoder == UNTRAINED_ENCODER:
            stderr.print(
                f"note: this build ships no trained {TRAINED_ENCODER} encoder; running with "
                f"the random-weight {UNTRAINED_ENCODER} encoder, so the scores mean nothing"
            )
    settings = _demo_settings(state_of(ctx).settings, data_dir, encoder)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    stdout.print(
        f"encoder {settings.encoder.name}, localizer {settings.localizer.name}; data in {data_dir}"
    )
    with CountBar("generating") as bar:
        corpus = generate_corpus(
            data_dir / "corpus",
            videos,
            seed,
            max_seconds=120.0,
            workers=2,
            progress=bar.update,
        )
    stdout.print(f"[1/4] generated {videos} videos and {len(corpus.queries)} queries")

    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection(COLLECTION, settings.encoder.name)
    with RichIngestProgress() as progress:
        result = ingest(
            catalog, settings, COLLECTION, [corpus.out_dir / "videos"], progress=progress
        )
    stdout.print(f"[2/4] indexed {len(result.ready)} videos ({len(result.failed)} failed)")

    gt = load_qvhighlights(corpus.annotations_path)
    service = SearchService(settings, catalog)
    rows: list[tuple[object, ...]] = []
    for query in gt[:SHOWN_QUERIES]:
        response = service.search(SearchRequest(query.query, top_k=3))
        truth = ", ".join(f"{mmss(s)}-{mmss(e)}" for s, e in query.windows)
        for rank, found in enumerate(response.results, 1):
            assert isinstance(found, MomentResult)
            hit = Path(found.uri).stem == query.vid
            rows.append(
                (
                    query.query if rank == 1 else "",
                    f"{query.vid} {truth}" if rank == 1 else "",
                    rank,
                    f"{Path(found.uri).stem} {mmss(found.start_s)}-{mmss(found.end_s)}",
                    f"{found.score:.3f}",
                    "yes" if hit else "",
                )
            )
    print_table(
        "[3/4] queries: top moments beside the ground truth",
        ["query", "ground truth", "#", "found", "score", "right video"],
        rows,
    )

    with CountBar("evaluating") as bar:
        metrics = evaluate_collection(
            settings,
            catalog,
            gt,
            CorpusEvalOptions(collection=COLLECTION),
            make_service=lambda s, c: service,
            progress=bar.update,
        )
    print_table(
        f"[4/4] corpus metrics over {metrics.n_queries} queries (recall, %)",
        ["metric", "IoU 0.5", "IoU 0.7"],
        [
            (f"VCMR R@{k}", metrics.vcmr.get(f"0.5-r{k}"), metrics.vcmr.get(f"0.7-r{k}"))
            for k in (1, 5, 10, 100)
        ]
        + [(f"VR R@{k}", metrics.vr.get(f"r{k}"), "") for k in (1, 5, 10)],
    )
    catalog.close()
