"""Span localizer latency with the shipped trained heads (`vtr-synth-s`, strategy `trained`).

One query against 1, 20 and 100 candidate videos of `--clips` clips (128-d features,
random directions: the cost does not depend on the content). `SpanLocalizer.localize` is
timed end to end with vtr's span embedding (`index.level_heads.head_spans`: one pass over
the video, edge variants and prefix sums) and, as the peer in the same run, with the
straightforward embedding: the action head on one batch of equal-length spans per span
length. The largest difference between the two embeddings is printed as a check.

Run:  .venv/bin/python bench/spans.py
      .venv/bin/python bench/spans.py --videos 20 --clips 90 --threads 1 --json
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.level_heads import head_spans, load_level_heads, shipped_checkpoint
from localize.spans import SpanLocalizer, span_ranges
from localize.types import QueryText, VideoClips

CLIP_SECONDS = 2.0


def _per_length_batches(clips: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """The peer: the action head on every span, one batch per span length."""
    heads = load_level_heads(shipped_checkpoint())
    bounds = np.asarray(ranges)
    lengths = bounds[:, 1] - bounds[:, 0]
    out = np.zeros((len(bounds), clips.shape[1]), np.float32)
    x = torch.from_numpy(clips)
    with torch.inference_mode():
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            index = torch.from_numpy(bounds[rows, :1] + np.arange(length))
            mask = torch.ones(index.shape, dtype=torch.bool)
            out[rows] = heads.action_vectors(x[index], mask).numpy()
    return out


def _fast(clips: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    return head_spans(load_level_heads(shipped_checkpoint()), clips, ranges)


def _videos(n: int, clips: int, dim: int, rng: np.random.Generator) -> list[VideoClips]:
    out = []
    for i in range(n):
        x = rng.standard_normal((clips, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append(VideoClips(i, x, CLIP_SECONDS, clips * CLIP_SECONDS))
    return out


def _median_ms(
    localizer: SpanLocalizer, query: QueryText, videos: list[VideoClips], n: int
) -> float:
    localizer.localize(query, videos, 3)  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        localizer.localize(query, videos, 3)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--clips", type=int, default=75)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dim = load_level_heads(shipped_checkpoint()).config.dim
    rng = np.random.default_rng(0)
    sentence = rng.standard_normal(dim).astype(np.float32)
    query = QueryText("bench", sentence / np.linalg.norm(sentence), np.zeros((1, dim), np.float32))
    probe = _videos(1, args.clips, dim, rng)[0].clips
    ranges = span_ranges(args.clips, SpanLocalizer(_fast).lengths_clips, 0.25)
    difference = float(np.abs(_fast(probe, ranges) - _per_length_batches(probe, ranges)).max())
    rows = []
    for n in args.videos:
        videos = _videos(n, args.clips, dim, rng)
        ours = _median_ms(SpanLocalizer(_fast), query, videos, args.repeats)
        peer = _median_ms(SpanLocalizer(_per_length_batches), query, videos, args.repeats)
        rows.append(
            {"videos": n, "spans_per_video": len(ranges), "ours_ms": round(ours, 1),
             "per_length_ms": round(peer, 1), "ratio": round(peer / ours, 2)}
        )  # fmt: skip
    if args.json:
        print(json.dumps({"clips": args.clips, "max_difference": difference, "runs": rows}))
        return
    print(f"{args.clips} clips per video, torch threads {torch.get_num_threads()}, "
          f"max |ours - per-length| = {difference:.2e}")  # fmt: skip
    print(f"{'videos':>7}{'spans/video':>13}{'ours ms':>10}{'per-length ms':>15}{'ratio':>8}")
    for r in rows:
        print(
            f"{r['videos']:>7}{r['spans_per_video']:>13}{r['ours_ms']:>10}"
            f"{r['per_length_ms']:>15}{r['ratio']:>8}"
        )


if __name__ == "__main__":
    main()
