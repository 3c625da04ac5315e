"""Sparse frame sampling: decode straight through, or seek to the keyframe before a target?

`engine.decode.iter_clips` seeks when the keyframe before the next target lies more than
`seek_gap_s` past the decoder's position. This benchmark writes test videos (moving noisy
content, h264, a range of keyframe intervals) and times one frame per clip at several clip
lengths for each `seek_gap_s`, with frames decoded and seeks made, so the default can be
picked from numbers. Figures depend on the machine and on its load at the time.

Run:  .venv/bin/python bench/decode_seek.py                 # 640x360, 25 fps, 60 s (a minute)
      .venv/bin/python bench/decode_seek.py --seconds 30 --gops 50
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.decode import DecodeStats, iter_clips
from tests.media import make_video


def moving_noise(width: int, height: int, seed: int = 0) -> Callable[[float], np.ndarray]:
    """A drifting textured picture: every frame differs, like real footage."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    gradient = np.linspace(0, 80, width, dtype=np.float32)[None, :, None]

    def pattern(t: float) -> np.ndarray:
        shift = int(t * 40) % width
        frame = texture[:, shift : shift + width].astype(np.float32) * 0.6 + gradient
        return np.clip(frame, 0, 255).astype(np.uint8)

    return pattern


def time_run(
    path: Path, clip_seconds: float, gap: float, repeats: int
) -> tuple[float, DecodeStats]:
    times, stats = [], DecodeStats()
    for _ in range(repeats):
        stats = DecodeStats()
        start = time.perf_counter()
        for _clip in iter_clips(path, clip_seconds, 1, 224, seek_gap_s=gap, stats=stats):
            pass
        times.append(time.perf_counter() - start)
    return statistics.median(times), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--gops", default="25,50,250", help="keyframe intervals (frames)")
    parser.add_argument("--clips", default="2,5,10,30", help="clip lengths (s)")
    parser.add_argument("--gaps", default="inf,0.5,1,2,4,8", help="seek_gap_s values")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    gaps = [float(g) for g in args.gaps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for gop in (int(g) for g in args.gops.split(",")):
            path = make_video(
                Path(tmp) / f"gop{gop}.mp4",
                seconds=args.seconds,
                fps=args.fps,
                size=(width, height),
                pattern=moving_noise(width, height),
                gop=gop,
                encoder_options={"preset": "veryfast"},
            )
            mb = path.stat().st_size / 2**20
            print(
                f"\n{args.size} {args.fps:g} fps {args.seconds:g} s h264, keyframe every "
                f"{gop / args.fps:g} s, {mb:.1f} MiB; median of {args.repeats}"
            )
            print(f"{'clip s':>7} {'seek_gap_s':>10} {'ms':>8} {'decoded':>8} {'seeks':>6}")
            for clip_seconds in (float(c) for c in args.clips.split(",")):
                for gap in gaps:
                    seconds, stats = time_run(path, clip_seconds, gap, args.repeats)
                    label = "never" if math.isinf(gap) else f"{gap:g}"
                    print(
                        f"{clip_seconds:7g} {label:>10} {seconds * 1000:8.1f} "
                        f"{stats.frames_decoded:8d} {stats.seeks:6d}"
                    )


if __name__ == "__main__":
    main()
