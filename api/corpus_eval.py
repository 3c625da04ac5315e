"""Corpus-level evaluation of the full search: every annotated query through `SearchService`.

Each query of a QVHighlights-format annotation file is searched across an indexed
collection exactly as `vtr search` would (stage 1, then the localizer on the candidates,
moments ranked by final score), and the ranked moments are scored with TVR's corpus
metrics (localize/corpus_metrics.py; Lei et al., ECCV 2020, github.com/jayleicn/
TVRetrieval): VCMR R@{1,5,10,100} at IoU 0.5/0.7, SVMR on the moments inside the GT
video, and VR on the video ranking the moments imply. Per-stage latencies (p50/p99 ms)
come from the service's own timings; `total` is the wall time of each search call less
its one-off model and index loading.

- An annotation's `vid` names a catalog video by its `metadata.vid` when set, else by the
  file stem of its `uri`. A query whose video is not a ready video of the collection, or
  that has no ground-truth window, is skipped and reported, never counted as a miss.
- `stage1_only`: no localizer; a candidate's moments are its best stage-1 action/entity
  segments (`SearchRequest.stage2 = False`), so stage 1 alone compares with two stages.
- `levels`: fusion weights of unlisted levels set to 0 for this run (level ablation).
- `localizer`: overrides `[localizer] name` for this run.
- Predictions come back as QVHighlights rows (localize/annotations.py): per query,
  `pred_relevant_windows` holds the ranked moments inside the GT video ([start_s, end_s,
  score]), which Moment-DETR's standalone eval (`vtr eval moments`) scores, and
  `pred_corpus_moments` the whole ranking as [vid, start_s, end_s, score] rows.

    queries = load_qvhighlights("annotations.jsonl")
    result = evaluate_collection(settings, catalog, queries, CorpusEvalOptions("synth"))
    result.vcmr["0.7-r1"], result.latency_ms["total"]["p50"]

CLI: `vtr eval corpus --annotations annotations.jsonl --collection synth`.
"""

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from api.search import MomentResult, SearchRequest, SearchService
from engine.config import Settings, settings_as_dict
from engine.errors import InputError
from index.catalog import Catalog, VideoRecord
from index.catalog_schema import VideoStatus
from index.levels import LEVELS
from localize.annotations import MomentQuery
from localize.corpus_metrics import evaluate_corpus
from localize.registry import LOCALIZERS

log = logging.getLogger(__name__)

TIMED_STAGES = ("encode_text", "stage1", "features", "stage2")
LATENCY_KEYS = (*TIMED_STAGES, "total")
SKIP_NO_VIDEO = "video not in collection"
SKIP_NO_WINDOWS = "no ground-truth windows"
SKIP_EMPTY_QUERY = "empty query"

ServiceFactory = Callable[[Settings, Catalog], SearchService]
Progress = Callable[[int, int], None]  # (queries done, queries in all)


@dataclass(frozen=True)
class CorpusEvalOptions:
    collection: str | None = None  # default: search.default_collection
    top_k: int = 100  # moments kept per query (R@100 needs 100)
    stage1_only: bool = False
    levels: tuple[str, ...] | None = None  # None: as configured
    localizer: str | None = None  # None: as configured
    limit: int | None = None  # only the first N queries of the file


@dataclass(frozen=True)
class SkippedQuery:
    qid: int | str
    vid: str
    reason: str


@dataclass(frozen=True)
class CorpusEvalResult:
    n_queries: int  # evaluated
    skipped: list[SkippedQuery]
    vcmr: dict[str, float]  # "{iou}-r{k}" -> percent
    svmr: dict[str, float]
    vr: dict[str, float]  # "r{k}" -> percent
    latency_ms: dict[str, dict[str, float | None]]  # stage -> p50/p99/mean (None: not run)
    settings: dict[str, Any]
    ground_truth: list[MomentQuery] = field(repr=False)  # the evaluated queries, file order
    predictions: list[dict[str, Any]] = field(repr=False)  # QVHighlights rows, same order

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON layout (predictions are written separately)."""
        return {
            "n_queries": self.n_queries,
            "skipped": [{"qid": s.qid, "vid": s.vid, "reason": s.reason} for s in self.skipped],
            "vcmr": self.vcmr,
            "svmr": self.svmr,
            "vr": self.vr,
            "latency_ms": self.latency_ms,
            "settings": self.settings,
        }


def video_key(uri: str, metadata: dict[str, Any]) -> str:
    """The annotation `vid` a catalog video answers to: `metadata.vid`, else the file stem."""
    vid = metadata.get("vid")
    return str(vid) if vid is not None and str(vid) else Path(uri).stem


def _ready_videos(catalog: Catalog, collection: str, page: int = 1000) -> Iterator[VideoRecord]:
    offset = 0
    while True:
        batch = catalog.list_videos(collection, VideoStatus.READY, limit=page, offset=offset)
        yield from batch
        if len(batch) < page:
            return
        offset += page


def collection_vids(catalog: Catalog, collection: str) -> dict[str, list[str]]:
    """vid -> uris of the collection's ready videos that answer to it."""
    found: dict[str, list[str]] = {}
    for video in _ready_videos(catalog, collection):
        found.setdefault(video_key(video.uri, video.user_metadata), []).append(video.uri)
    return found


def run_settings(
    settings: Settings, levels: Sequence[str] | None = None, localizer: str | None = None
) -> Settings:
    """`settings` with unlisted levels' fusion weights at 0 and the localizer renamed."""
    search = settings.search
    if levels is not None:
        unknown = sorted(set(levels) - set(LEVELS))
        if unknown or not levels:
            raise InputError(
                f"levels must be some of {', '.join(LEVELS)}; got {', '.join(levels) or 'none'}"
            )
        search = search.model_copy(
            update={f"weight_{level}": 0.0 for level in LEVELS if level not in levels}
        )
        if all(getattr(search, f"weight_{level}") <= 0 for level in LEVELS):
            raise InputError(
                f"every listed level ({', '.join(levels)}) has fusion weight 0 in [search]"
            )
    loc = settings.localizer
    if localizer is not None:
        if localizer not in LOCALIZERS:
            raise InputError(
                f"unknown localizer {localizer!r}; known: {', '.join(sorted(LOCALIZERS))}"
            )
        loc = loc.model_copy(update={"name": localizer})
    return settings.model_copy(update={"search": search, "localizer": loc})


def _select(
    queries: Sequence[MomentQuery], present: dict[str, list[str]], collection: str
) -> tuple[list[MomentQuery], list[SkippedQuery]]:
    kept, skipped = [], []
    for q in queries:
        if q.vid not in present:
            skipped.append(SkippedQuery(q.qid, q.vid, SKIP_NO_VIDEO))
        elif not q.windows:
            skipped.append(SkippedQuery(q.qid, q.vid, SKIP_NO_WINDOWS))
        elif not q.query.strip():
            skipped.append(SkippedQuery(q.qid, q.vid, SKIP_EMPTY_QUERY))
        elif len(present[q.vid]) > 1:
            uris = ", ".join(present[q.vid][:3])
            raise InputError(
                f"vid {q.vid!r} names {len(present[q.vid])} videos of collection "
                f"{collection!r} ({uris}); set metadata.vid to tell them apart"
            )
        else:
            kept.append(q)
    return kept, skipped


def _latency(samples: dict[str, list[float]], n_queries: int) -> dict[str, dict[str, float | None]]:
    """p50/p99/mean per stage; None for a stage that did not run on every query."""
    out: dict[str, dict[str, float | None]] = {}
    for key in LATENCY_KEYS:
        values = np.asarray(samples.get(key, []), dtype=np.float64)  # (n_queries,)
        if len(values) != n_queries or n_queries == 0:
            out[key] = {"p50": None, "p99": None, "mean": None}
            continue
        out[key] = {
            "p50": round(float(np.percentile(values, 50)), 3),
            "p99": round(float(np.percentile(values, 99)), 3),
            "mean": round(float(values.mean()), 3),
        }
    return out


def _prediction_row(q: MomentQuery, ranked: list[MomentResult]) -> dict[str, Any]:
    rows = [[video_key(m.uri, m.metadata), m.start_s, m.end_s, m.score] for m in ranked]
    return {
        "qid": q.qid,
        "query": q.query,
        "vid": q.vid,
        "pred_relevant_windows": [[st, ed, score] for vid, st, ed, score in rows if vid == q.vid],
        "pred_corpus_moments": rows,
    }


def evaluate_collection(
    settings: Settings,
    catalog: Catalog,
    queries: Sequence[MomentQuery],
    options: CorpusEvalOptions | None = None,
    *,
    make_service: ServiceFactory = SearchService,
    progress: Progress | None = None,
) -> CorpusEvalResult:
    """Search every query of `queries` in a collection and score the rankings.

    `make_service` builds the search service from the run's settings (tests pass one that
    reuses an encoder); `progress` is called after each query.
    """
    options = options or CorpusEvalOptions()
    if options.limit is not None and options.limit < 1:
        raise InputError(f"limit must be >= 1, got {options.limit}")
    if not 1 <= options.top_k <= settings.search.max_top_k:
        raise InputError(
            f"top_k must be between 1 and search.max_top_k = {settings.search.max_top_k}, "
            f"got {options.top_k}"
        )
    run = run_settings(settings, options.levels, options.localizer)
    name = options.collection or run.search.default_collection
    collection = catalog.get_collection(name)
    chosen = list(queries)[: options.limit] if options.limit is not None else list(queries)
    if len({q.qid for q in chosen}) != len(chosen):
        raise InputError("duplicate qids in the annotations")
    gt, skipped = _select(chosen, collection_vids(catalog, name), name)
    for s in skipped:
        log.debug("skipping qid %r (vid %r): %s", s.qid, s.vid, s.reason)
    if not gt:
        raise InputError(
            f"none of the {len(chosen)} queries can be evaluated on collection {name!r} "
            f"({len(skipped)} skipped, e.g. qid {skipped[0].qid!r}: {skipped[0].reason})"
            if skipped
            else "no queries to evaluate"
        )
    service = make_service(run, catalog)
    ranked: dict[int | str, list[MomentResult]] = {}
    samples: dict[str, list[float]] = {}
    for done, q in enumerate(gt, start=1):
        request = SearchRequest(
            q.query, name, options.top_k, debug=True, stage2=not options.stage1_only
        )
        start = time.perf_counter()
        response = service.search(request)
        total_ms = 1000 * (time.perf_counter() - start)
        timings = response.timings_ms or {}
        for stage in TIMED_STAGES:
            if stage in timings:
                samples.setdefault(stage, []).append(timings[stage])
        # Models and indexes load on the first query; that one-off cost is not latency.
        samples.setdefault("total", []).append(total_ms - timings.get("load", 0.0))
        results = response.results
        ranked[q.qid] = [r for r in results if isinstance(r, MomentResult)]
        if progress is not None:
            progress(done, len(gt))
    predictions = [_prediction_row(q, ranked[q.qid]) for q in gt]
    metrics = evaluate_corpus(
        gt, moments={row["qid"]: row["pred_corpus_moments"] for row in predictions}
    )
    search = settings_as_dict(run)["search"]
    return CorpusEvalResult(
        n_queries=len(gt),
        skipped=skipped,
        vcmr=metrics["VCMR"],
        svmr=metrics["SVMR"],
        vr=metrics["VR"],
        latency_ms=_latency(samples, len(gt)),
        settings={
            "collection": name,
            "encoder": collection.encoder_spec,
            "top_k": options.top_k,
            "stage1_only": options.stage1_only,
            "levels": [level for level in LEVELS if search[f"weight_{level}"] > 0],
            "localizer": None if options.stage1_only else run.localizer.name,
            "search": search,
        },
        ground_truth=gt,
        predictions=predictions,
    )
