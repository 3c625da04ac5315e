"""Retrieval metrics of an encoder + level strategy on a generated corpus with exact truth.

For every query of a `vtr synth` corpus (its own phrasing and the other one: the world
does not depend on the phrasing, so the held-out wording is re-planned from world.json):
- text -> video: the sentence against each video's global vector; R@1/5/10 (percent);
- text -> moment inside the right video: the top-scoring action window; R@1 at IoU >= 0.5
  with the query's window, the mean IoU of that window, and the best any window of the
  layout could do (`moment_bound_r1_iou50`: windows are fixed, so longer events cannot
  reach IoU 0.5).
Clip features are computed from the same preprocessed pixels ingest feeds the encoder
(`data.load_clip_cache`), rounded through float16 as the feature store keeps them. Level
strategies come in as functions (the index owns them), so this module needs no `index`.

    metrics = evaluate_corpus(encoder, Path("synth-eval"), {"pooling": fn})
"""

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.encoders import Encoder
from engine.errors import VtrError
from engine.synth.render import WORLD_NAME, load_world
from engine.synth.world import CorpusPlan, SynthQuery, plan_corpus
from engine.train_encoder.data import ClipCache, load_clip_cache

log = logging.getLogger(__name__)

# clips (T, D) float32, duration (s) -> level -> (vectors (n, D), spans (n, 2) seconds)
LevelFn = Callable[[np.ndarray, float], Mapping[str, tuple[np.ndarray, np.ndarray]]]


def clip_features(encoder: Encoder, cache: ClipCache, batch: int = 256) -> dict[str, np.ndarray]:
    """vid -> (T, D) float32 clip embeddings, rounded through float16 (as stored)."""
    out = {}
    for vid, (first, end) in cache.offsets.items():
        rows = np.arange(first, end)
        parts = [
            encoder.encode_images(cache.pixels(rows[i : i + batch]))
            for i in range(0, len(rows), batch)
        ]
        out[vid] = np.concatenate(parts).astype(np.float16).astype(np.float32)
    return out


def both_phrasings(plan: CorpusPlan) -> dict[str, tuple[SynthQuery, ...]]:
    """The corpus's queries worded with the default and with the held-out phrasing."""
    settings = dict(plan.settings)
    size = settings.pop("size")
    n_videos = settings.pop("n_videos")
    out = {}
    for name, heldout in (("default", False), ("heldout", True)):
        if plan.heldout_phrasing == heldout:
            out[name] = plan.queries
            continue
        other = plan_corpus(
            n_videos, plan.seed, size=(size[0], size[1]), heldout_phrasing=heldout, **settings
        )
        if other.videos != plan.videos:
            raise VtrError("re-planning the corpus gave another world; cannot reword queries")
        out[name] = other.queries
    return out


def _iou(a: np.ndarray, b: tuple[float, float]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return max(0.0, float(inter)) / float(union) if union > 0 else 0.0


def retrieval_metrics(
    sentences: np.ndarray,
    queries: tuple[SynthQuery, ...],
    levels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
) -> dict[str, float]:
    """sentences (Q, D) normalised; levels: vid -> level -> (vectors, spans)."""
    vids = list(levels)
    position = {vid: i for i, vid in enumerate(vids)}
    global_vectors = np.stack([levels[v]["global"][0][0] for v in vids])  # (V, D)
    scores = sentences @ global_vectors.T  # (Q, V)
    right = np.array([position[q.vid] for q in queries])
    right_scores = scores[np.arange(len(queries)), right]
    ranks = (scores > right_scores[:, None]).sum(axis=1)  # 0 = first
    hit50, ious, bound = [], [], []
    for i, q in enumerate(queries):
        vectors, spans = levels[q.vid]["action"]
        best = int(np.argmax(vectors @ sentences[i]))
        overlap = _iou(spans[best], q.window)
        ious.append(overlap)
        hit50.append(overlap >= 0.5)
        bound.append(max(_iou(s, q.window) for s in spans) >= 0.5)
    n = max(1, len(queries))
    return {
        "queries": len(queries),
        "videos": len(vids),
        "t2v_r1": round(100.0 * float((ranks < 1).sum()) / n, 2),
        "t2v_r5": round(100.0 * float((ranks < 5).sum()) / n, 2),
        "t2v_r10": round(100.0 * float((ranks < 10).sum()) / n, 2),
        "moment_r1_iou50": round(100.0 * float(np.mean(hit50)), 2),
        "moment_miou": round(100.0 * float(np.mean(ious)), 2),
        "moment_bound_r1_iou50": round(100.0 * float(np.mean(bound)), 2),
    }


def evaluate_corpus(
    encoder: Encoder,
    corpus_dir: Path,
    strategies: Mapping[str, LevelFn],
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """strategy -> phrasing -> metrics, on every query of the corpus at `corpus_dir`."""
    corpus_dir = Path(corpus_dir)
    plan = load_world(corpus_dir / WORLD_NAME)
    cache = load_clip_cache(corpus_dir, plan, encoder.transform, cache_dir)
    features = clip_features(encoder, cache)
    durations = {v.vid: v.duration_s for v in plan.videos}
    phrasings = both_phrasings(plan)
    sentences = {
        name: encoder.encode_text([q.text for q in queries], max_tokens=encoder.context_length)
        for name, queries in phrasings.items()
    }
    result: dict[str, Any] = {"corpus": corpus_dir.name, "seed": plan.seed}
    for strategy, fn in strategies.items():
        levels = {vid: fn(clips, durations[vid]) for vid, clips in features.items()}
        result[strategy] = {
            name: retrieval_metrics(sentences[name].sentence, queries, levels)
            for name, queries in phrasings.items()
        }
        log.info("%s: %s", strategy, result[strategy])
    return result
