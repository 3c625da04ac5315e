"""Ingest throughput: decode alone, encode alone, and the overlapped pipeline (clips/s).

Generates test videos with PyAV, then measures, in one run:
- decode: the pipeline's decoder threads (decode + resize + preprocess) with an encoder
  that does no work, so only decoding limits the rate;
- encode: the image encoder on already-preprocessed clips, batch by batch;
- pipeline: `engine.pipeline.encode_videos` with both, as `vtr index` runs them.
The ratio pipeline / min(decode, encode) is 1.0 when the overlap hides the faster stage
completely. When decoding and encoding share the same CPU cores (a CPU encoder), the work
of both must fit on them: no overlap beats 1 / (1/decode + 1/encode) clips/s, which is
printed too, with the pipeline's share of it. Random-init weights cost what trained
ones do.

    python bench/ingest.py                               # ViT-B/32, 6 videos of 60 s
    python bench/ingest.py --encoder tiny-random --videos 4 --seconds 30 --json
    python bench/ingest.py --content noise                # worst case for the decoder

`--content scene` (default) draws a lit gradient with moving discs, which compresses like
camera footage; `--content noise` scrolls random pixels, which x264 cannot compress, so
every keyframe costs ~10 ms to decode at 640x360: a worst case for decoding.
"""

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.decode import iter_clips, probe
from engine.encoders import create_encoder
from engine.pipeline import EncodedVideo, VideoTask, encode_videos
from tests.media import make_video


class NoEncode:
    """Preprocesses like the real encoder but returns zeros: isolates decoding."""

    def __init__(self, real: object) -> None:
        self._real = real
        self.image_size = real.image_size  # type: ignore[attr-defined]
        self.embed_dim = real.embed_dim  # type: ignore[attr-defined]

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return self._real.preprocess(frames)  # type: ignore[attr-defined,no-any-return]

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        return np.ones((len(pixels), self.embed_dim), np.float32)


def _noise(size: tuple[int, int], rng: np.random.Generator) -> Callable[[float], np.ndarray]:
    width, height = size
    base = rng.integers(0, 255, (height, width, 3), np.uint8)

    def pattern(t: float) -> np.ndarray:
        return np.roll(base, int(t * 40), axis=1)  # moving texture: real motion

    return pattern


def _scene(size: tuple[int, int], rng: np.random.Generator) -> Callable[[float], np.ndarray]:
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    sky = top + (bottom - top) * (ys / height)[..., None]  # vertical light gradient
    discs = [
        (
            rng.uniform(0.1, 0.9, 2),
            rng.uniform(-0.2, 0.2, 2),
            rng.uniform(0.04, 0.15),
            rng.uniform(0, 255, 3),
        )
        for _ in range(4)
    ]

    def pattern(t: float) -> np.ndarray:
        frame = sky * (0.9 + 0.1 * np.sin(t))  # slow change of light
        for centre, speed, radius, colour in discs:
            cx, cy = (np.abs((centre + speed * t + 1.0) % 2.0 - 1.0)) * (width, height)
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 < (radius * height) ** 2
            frame[inside] = colour
        return frame.astype(np.uint8)

    return pattern


_CONTENT = {"scene": _scene, "noise": _noise}


def _run_pipeline(tasks: list[VideoTask], encoder: object, args: argparse.Namespace) -> float:
    decode = functools.partial(
        iter_clips,
        clip_seconds=args.clip_seconds,
        frames_per_clip=args.frames_per_clip,
        short_side=encoder.image_size,  # type: ignore[attr-defined]
    )
    start = time.perf_counter()
    clips = 0
    for result in encode_videos(
        tasks,
        encoder,  # type: ignore[arg-type]
        decode,
        probe,
        frames_per_clip=args.frames_per_clip,
        batch_size=args.batch_size,
        workers=args.workers,
    ):
        if not isinstance(result, EncodedVideo):
            raise SystemExit(f"bench video failed: {result}")
        clips += len(result.clips)
    return clips / (time.perf_counter() - start)


def _encode_only(encoder: object, n_clips: int, args: argparse.Namespace) -> float:
    size = encoder.image_size  # type: ignore[attr-defined]
    frames = np.random.default_rng(0).integers(0, 255, (args.batch_size, size, size, 3), np.uint8)
    pixels = encoder.preprocess(frames)  # type: ignore[attr-defined]
    encoder.encode_images(pixels)  # type: ignore[attr-defined]  # warm-up
    batches = max(1, n_clips * args.frames_per_clip // args.batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        encoder.encode_images(pixels)  # type: ignore[attr-defined]
    return batches * args.batch_size / args.frames_per_clip / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="open_clip:ViT-B-32:random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="640x360", help="coded frame size WxH")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument(
        "--gop", type=int, default=None, help="keyframe interval in frames (default: x264's, 250)"
    )
    parser.add_argument("--content", choices=sorted(_CONTENT), default="scene")
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--frames-per-clip", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    encoder = create_encoder(args.encoder, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        tasks = []
        for i in range(args.videos):
            path = make_video(
                Path(tmp) / f"v{i}.mp4",
                args.seconds,
                args.fps,
                (width, height),
                pattern=_CONTENT[args.content]((width, height), rng),
                gop=args.gop,
            )
            tasks.append(VideoTask(i, path))
        decode_rate = _run_pipeline(tasks, NoEncode(encoder), args)
        n_clips = int(args.videos * args.seconds / args.clip_seconds)
        encode_rate = _encode_only(encoder, min(n_clips, 256), args)
        pipeline_rate = _run_pipeline(tasks, encoder, args)
    ratio = pipeline_rate / min(decode_rate, encode_rate)
    # When both stages run on the same CPU cores, each clip costs the CPU time of both:
    # no overlap can beat 1 / (1/decode + 1/encode) clips/s.
    shared_bound = 1.0 / (1.0 / decode_rate + 1.0 / encode_rate)
    figures = {
        "encoder": args.encoder,
        "device": str(encoder.device),
        "videos": args.videos,
        "seconds_per_video": args.seconds,
        "frame_size": args.size,
        "fps": args.fps,
        "content": args.content,
        "gop_frames": args.gop,
        "workers": args.workers,
        "decode_clips_per_s": round(decode_rate, 1),
        "encode_clips_per_s": round(encode_rate, 1),
        "pipeline_clips_per_s": round(pipeline_rate, 1),
        "pipeline_over_slower_stage": round(ratio, 3),
        "shared_cpu_bound_clips_per_s": round(shared_bound, 1),
        "pipeline_over_shared_cpu_bound": round(pipeline_rate / shared_bound, 3),
        "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"encoder {args.encoder} on {encoder.device}; {args.videos} videos x {args.seconds:.0f} s"
    )
    gop = f"keyframe every {args.gop} frames" if args.gop else "x264's default keyframe interval"
    print(
        f"{args.content}, {args.size} at {args.fps:g} fps, {gop}; {args.workers} decoder threads\n"
    )
    print(f"{'stage':<10}{'clips/s':>10}")
    for stage in ("decode", "encode", "pipeline"):
        print(f"{stage:<10}{figures[f'{stage}_clips_per_s']:>10}")
    print(f"\npipeline / min(decode, encode) = {ratio:.3f}")
    print(
        f"pipeline / shared-CPU bound 1/(1/decode + 1/encode) = {shared_bound:.1f} clips/s: "
        f"{pipeline_rate / shared_bound:.3f}"
    )


if __name__ == "__main__":
    main()
