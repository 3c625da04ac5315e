"""End-to-end search latency and throughput on a synthetic corpus, per stage.

Builds (or reuses) a collection of N videos of 75 clips whose 512-d clip features are
synthesised straight into the feature store (`ingest_features`: scenes of a few clips
plus noise, like CLIP features of real shots), with the ViT-B/32 architecture as the
text encoder (random weights cost the same as trained ones) and MESM in its CLIP-only
configuration (random weights) localizing the stage-1 candidates. Prints p50/p99 latency,
queries per second (sequential, and from 4 threads at once) and the per-stage breakdown.

    python bench/search.py                       # 1000 and 10000 videos, MESM, 20 candidates
    python bench/search.py --videos 1000 --localizer similarity --json
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.search import SearchRequest, SearchService
from engine.config import load_settings
from index.catalog import Catalog
from index.ingest import FeatureVideo, ingest_features
from localize.mesm.checkpoint import save_checkpoint
from localize.mesm.config import clip_only
from localize.mesm.model import MesmModel

ENCODER = "open_clip:ViT-B-32:random"
DIM = 512
CLIPS = 75
QUERIES = [
    "a man slices a pizza in the kitchen",
    "the red car turns left at the crossing",
    "a dog catches a frisbee on the beach",
    "two people shake hands in an office",
    "the crowd cheers as the ball goes in",
    "a small blue square moves up",
    "someone pours coffee into a white cup",
    "a child rides a bicycle down the street",
]


def _videos(n: int, seed: int) -> list[FeatureVideo]:
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n):
        n_scenes = int(rng.integers(3, 9))
        scenes = rng.standard_normal((n_scenes, DIM)).astype(np.float32)
        cuts = np.sort(rng.choice(np.arange(1, CLIPS), n_scenes - 1, replace=False))
        owner = np.searchsorted(cuts, np.arange(CLIPS), side="right")
        clips = scenes[owner] + 0.3 * rng.standard_normal((CLIPS, DIM)).astype(np.float32)
        clips /= np.linalg.norm(clips, axis=1, keepdims=True)
        videos.append(FeatureVideo(f"/bench/{seed}/{i}.mp4", clips, CLIPS * 2.0))
    return videos


def _build(root: Path, n_videos: int, localizer: str, candidates: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    checkpoint = root / "mesm.pt"
    if not checkpoint.exists():
        torch.manual_seed(0)
        save_checkpoint(checkpoint, MesmModel(clip_only(DIM)).eval())
    config = root / "config.toml"
    config.write_text(
        f'[encoder]\nname = "{ENCODER}"\n[search]\ndefault_collection = "bench"\n'
        f"candidates = {candidates}\n"
        f'[localizer]\nname = "{localizer}"\ncheckpoint = "{checkpoint}"\n'
    )
    settings = load_settings(config)
    catalog = Catalog.initialise(settings.catalog_url)
    if "bench" not in {c.name for c in catalog.list_collections()}:
        catalog.create_collection("bench", ENCODER)
    have = catalog.get_collection("bench").n_videos
    start = time.perf_counter()
    for chunk in range(have, n_videos, 500):
        ingest_features(catalog, settings, "bench", _videos(min(500, n_videos - chunk), chunk))
    if have < n_videos:
        print(f"built {n_videos} videos in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    catalog.close()
    return config


def _measure(config: Path, n_queries: int) -> dict[str, object]:
    settings = load_settings(config)
    catalog = Catalog.open(settings.catalog_url)
    service = SearchService(settings, catalog)
    service.search(SearchRequest(QUERIES[0], debug=True))  # load models and indexes
    totals, stages = [], []
    for i in range(n_queries):
        start = time.perf_counter()
        response = service.search(SearchRequest(QUERIES[i % len(QUERIES)], debug=True))
        totals.append(1000 * (time.perf_counter() - start))
        stages.append(response.timings_ms or {})
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda q: service.search(SearchRequest(q)), QUERIES * 2))
    concurrent_qps = len(QUERIES) * 2 / (time.perf_counter() - start)
    names = sorted({name for s in stages for name in s} - {"load"})
    ordered = sorted(totals)
    return {
        "videos": catalog.get_collection("bench").n_videos,
        "p50_ms": round(statistics.median(totals), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "qps_sequential": round(1000 / statistics.mean(totals), 2),
        "qps_4_threads": round(concurrent_qps, 2),
        "stage_p50_ms": {
            n: round(statistics.median(s.get(n, 0.0) for s in stages), 1) for n in names
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--localizer", choices=["mesm", "similarity", "spans"], default="mesm")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--data-dir", type=Path, help="reuse a corpus across runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or Path(tmp)
        rows = []
        for n in sorted(args.videos):
            config = _build(root / f"n{n}", n, args.localizer, args.candidates)
            rows.append(_measure(config, args.queries))
    if args.json:
        print(
            json.dumps(
                {"localizer": args.localizer, "candidates": args.candidates, "runs": rows}, indent=2
            )
        )
        return
    threads = torch.get_num_threads()
    print(f"localizer {args.localizer}, {args.candidates} candidates, torch threads {threads}")
    print(f"{'videos':>8}{'p50 ms':>9}{'p99 ms':>9}{'q/s':>7}{'q/s x4':>8}  stages p50 ms")
    for row in rows:
        stages = ", ".join(f"{k} {v}" for k, v in row["stage_p50_ms"].items())  # type: ignore[attr-defined]
        print(
            f"{row['videos']:>8}{row['p50_ms']:>9}{row['p99_ms']:>9}"
            f"{row['qps_sequential']:>7}{row['qps_4_threads']:>8}  {stages}"
        )


if __name__ == "__main__":
    main()
