"""Drawing synthetic videos and writing a corpus to disk (frames with numpy, mp4 with PyAV).

Each frame is the background plus every visible object, drawn from `world.Timeline`
states at t = k / fps. Shapes are masks computed on the object's bounding box only, at
2x2 supersampling (soft edges), then alpha-blended; a colour change is a left-to-right
wipe, so no in-between hue ever shows. Videos are h264 (libx264, yuv420p, one keyframe
per 2 s clip, `+faststart`), written to a temporary name and renamed when complete.

A corpus directory holds `videos/<vid>.mp4`, `annotations.jsonl` (QVHighlights format:
qid, query, vid, duration, relevant_windows, relevant_clip_ids, saliency_scores) and
`world.json` (the full plan: every object and event, `world.corpus_from_dict` reads it).

    manifest = generate_corpus(Path("synth"), n_videos=20, seed=0, workers=2)
    render_video(plan_corpus(1, seed=3).videos[0], Path("one.mp4"))
"""

import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.video.stream
import numpy as np

from engine.errors import ConflictError, InputError, NotFoundError, VtrError
from engine.synth.world import (
    COLOURS,
    CorpusPlan,
    ObjectState,
    SynthQuery,
    Timeline,
    VideoPlan,
    annotation_rows,
    corpus_from_dict,
    plan_corpus,
)

log = logging.getLogger(__name__)

ANNOTATIONS_NAME = "annotations.jsonl"
WORLD_NAME = "world.json"
VIDEOS_DIR = "videos"
SUPERSAMPLE = 2  # per axis
EXTENT = 1.32  # bounding half-size of every shape, in radii (the triangle's reach)
H264_PRESET = "veryfast"
H264_CRF = 18

ProgressFn = Callable[[int, int], None]  # (videos done, videos in all); first call: (0, n)


def _inside(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Mask of points (u, v) (pixels, object frame, v down) inside `shape` of radius r."""
    d2 = u * u + v * v  # (h, w)
    if shape == "circle":
        return d2 <= r * r
    if shape == "ring":
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82 * r
    if shape == "triangle":  # equilateral, apex up, circumradius 1.3 r
        half_in = 0.65 * r  # inradius
        out = v <= half_in
        for phi in (math.radians(210.0), math.radians(330.0)):
            out &= u * math.cos(phi) + v * math.sin(phi) <= half_in
        return out
    if shape == "star":  # five points, one up; outer radius 1.25 r, inner 0.45 of it
        outer = 1.25 * r
        inner = 0.45 * outer
        theta = np.arctan2(v, u) + math.pi / 2.0  # 0 = straight up
        sector = 2.0 * math.pi / 5.0
        a = np.mod(theta, sector)
        phi = np.minimum(a, sector - a)  # angle to the nearest point
        rho = np.sqrt(d2)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        bx, by = inner * math.cos(sector / 2.0), inner * math.sin(sector / 2.0)
        return (bx - outer) * py - by * (px - outer) >= 0.0
    raise InputError(f"unknown shape {shape!r}")


class FrameRenderer:
    """Frames of one planned video: `frame(t_s)` -> (height, width, 3) uint8 RGB."""

    def __init__(self, video: VideoPlan) -> None:
        self.video = video
        self.timeline = Timeline(video)
        self.width, self.height = video.width, video.height
        self._colours = {name: np.array(rgb, np.float32) for name, rgb in COLOURS.items()}
        bg = video.background
        self._a = np.array(bg.colour_a, np.float32)
        self._b = np.array(bg.colour_b, np.float32)
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)  # (H, W) each
        if bg.kind == "plain":
            self._static: np.ndarray | None = np.broadcast_to(
                np.round(self._a).astype(np.uint8), (self.height, self.width, 3)
            )
        elif bg.kind == "gradient":
            ramp = ys / max(1, self.height - 1) if bg.vertical else xs / max(1, self.width - 1)
            image = self._a + (self._b - self._a) * ramp[..., None]  # (H, W, 3)
            self._static = np.round(image).astype(np.uint8)
        else:
            self._static = None
            self._coord = xs if bg.vertical else xs + ys  # (H, W) stripe coordinate, pixels
            self._half_period = max(1.0, bg.period * self.height / 2.0)
            self._drift_px_s = bg.drift * self.height

    def background(self, t_s: float) -> np.ndarray:
        """The backdrop at `t_s`: (H, W, 3) uint8, a fresh array."""
        if self._static is not None:
            return self._static.copy()
        phase = math.floor(self._drift_px_s * t_s)  # whole pixels: crisp stripes
        light = np.floor((self._coord - phase) / self._half_period) % 2 == 0  # (H, W)
        a, b = np.round(self._a).astype(np.uint8), np.round(self._b).astype(np.uint8)
        return np.where(light[..., None], a, b)

    def draw(self, frame: np.ndarray, s: ObjectState) -> None:
        """Blend object state `s` into `frame` (H, W, 3) uint8, in place."""
        if s.alpha <= 0.0:
            return
        cx, cy, r = s.x * self.width, s.y * self.height, s.radius * self.height
        reach = EXTENT * r + 1.0
        x0, x1 = max(0, math.floor(cx - reach)), min(self.width, math.ceil(cx + reach))
        y0, y1 = max(0, math.floor(cy - reach)), min(self.height, math.ceil(cy + reach))
        if x1 <= x0 or y1 <= y0:
            return
        n = SUPERSAMPLE
        xs = x0 + (np.arange((x1 - x0) * n, dtype=np.float32) + 0.5) / n - cx  # (w*n,)
        ys = y0 + (np.arange((y1 - y0) * n, dtype=np.float32) + 0.5) / n - cy  # (h*n,)
        angle = math.radians(s.angle_deg)
        c, sn = math.cos(angle), math.sin(angle)
        u = xs[None, :] * c + ys[:, None] * sn  # (h*n, w*n), object frame
        v = -xs[None, :] * sn + ys[:, None] * c
        mask = _inside(s.shape, u, v, r)
        h, w = y1 - y0, x1 - x0
        coverage = mask.reshape(h, n, w, n).mean(axis=(1, 3), dtype=np.float32)  # (h, w)
        alpha = (coverage * np.float32(s.alpha))[..., None]  # (h, w, 1)
        colour = self._colours[s.colour]  # (3,)
        if s.wipe_colour:
            edge = cx - EXTENT * r + 2.0 * EXTENT * r * s.wipe
            new = (np.arange(x0, x1, dtype=np.float32) + 0.5 < edge)[None, :, None]  # (1, w, 1)
            colour = np.where(new, self._colours[s.wipe_colour], colour)  # (1, w, 3)
        region = frame[y0:y1, x0:x1].astype(np.float32)  # (h, w, 3)
        region += (colour - region) * alpha
        frame[y0:y1, x0:x1] = np.round(region).astype(np.uint8)

    def frame(self, t_s: float) -> np.ndarray:
        """The picture at `t_s` seconds: (H, W, 3) uint8 RGB."""
        image = self.background(t_s)
        for state in self.timeline.states(t_s):
            self.draw(image, state)
        return image

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame of the video, at t = k / fps."""
        for k in range(self.video.n_frames):
            yield self.frame(k / self.video.fps)


def render_video(video: VideoPlan, path: Path) -> Path:
    """Write `video` as an h264 mp4 at `path` (atomically) and return `path`."""
    renderer = FrameRenderer(video)  # validates the plan before anything is written
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream(
                "libx264",
                rate=Fraction(video.fps).limit_denominator(1001),
                options={"preset": H264_PRESET, "crf": str(H264_CRF)},
            )
            if not isinstance(stream, av.video.stream.VideoStream):
                raise InputError("libx264 did not give a video stream")
            stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
            stream.gop_size = max(1, round(2.0 * video.fps))  # a keyframe per 2 s clip
            stream.codec_context.thread_count = 1  # processes give the parallelism
            for k, image in enumerate(renderer.frames()):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = k
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        os.replace(tmp, path)
    except (OSError, av.FFmpegError) as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write video {path}: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_annotations(corpus: CorpusPlan, path: Path) -> Path:
    """Write the corpus's queries as QVHighlights jsonl (atomically); returns `path`."""
    text = "".join(json.dumps(row) + "\n" for row in annotation_rows(corpus))
    return _write_text(path, text)


def write_world(corpus: CorpusPlan, path: Path) -> Path:
    """Write the full plan (every object, event and query) as JSON (atomically)."""
    return _write_text(path, json.dumps(corpus.to_dict()) + "\n")


def load_world(path: Path) -> CorpusPlan:
    """The plan stored in a corpus's world.json (every object, event and query)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise NotFoundError(f"no such file: {path}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    return corpus_from_dict(data)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


@dataclass(frozen=True)
class VideoFile:
    vid: str
    path: Path
    duration_s: float


@dataclass(frozen=True)
class CorpusManifest:
    """What `generate_corpus` wrote, the plan it followed, and how long rendering took."""

    out_dir: Path
    annotations_path: Path
    world_path: Path
    videos: tuple[VideoFile, ...]
    plan: CorpusPlan
    render_seconds: float  # wall time to draw and encode every video
    workers: int

    @property
    def queries(self) -> tuple[SynthQuery, ...]:
        """The annotations, as written to annotations.jsonl (qid order)."""
        return self.plan.queries

    @property
    def video_seconds(self) -> float:
        return sum(v.duration_s for v in self.videos)

    @property
    def seconds_per_video_minute(self) -> float:
        """Wall seconds spent per minute of video written."""
        return self.render_seconds / max(self.video_seconds / 60.0, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        queries_per_vid: dict[str, int] = {}
        for q in self.plan.queries:
            queries_per_vid[q.vid] = queries_per_vid.get(q.vid, 0) + 1
        events = {v.vid: len(v.events) for v in self.plan.videos}
        return {
            "out_dir": str(self.out_dir),
            "annotations": str(self.annotations_path),
            "world": str(self.world_path),
            "seed": self.plan.seed,
            "heldout_phrasing": self.plan.heldout_phrasing,
            "n_videos": len(self.videos),
            "n_queries": len(self.plan.queries),
            "n_events": sum(events.values()),
            "video_seconds": self.video_seconds,
            "render_seconds": round(self.render_seconds, 3),
            "seconds_per_video_minute": round(self.seconds_per_video_minute, 3),
            "workers": self.workers,
            "videos": [
                {
                    "vid": v.vid,
                    "path": str(v.path),
                    "duration_s": v.duration_s,
                    "n_events": events[v.vid],
                    "n_queries": queries_per_vid.get(v.vid, 0),
                }
                for v in self.videos
            ],
        }


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Create `out_dir`/videos; refuse to mix with an earlier corpus unless `overwrite`."""
    videos = out_dir / VIDEOS_DIR
    earlier = [p for p in (out_dir / ANNOTATIONS_NAME, out_dir / WORLD_NAME) if p.exists()]
    if videos.is_dir():
        earlier.extend(sorted(videos.glob("*.mp4")))
    if earlier and not overwrite:
        raise ConflictError(
            f"{out_dir} already holds a synthetic corpus ({earlier[0].name}, ...); "
            "choose another directory or overwrite it (vtr synth --overwrite)"
        )
    try:
        for p in earlier:
            p.unlink()
        videos.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot prepare {out_dir}: {e.strerror or e}") from e
    return videos


def generate_corpus(
    out_dir: Path,
    n_videos: int,
    seed: int,
    *,
    min_seconds: float = 20.0,
    max_seconds: float = 180.0,
    fps: float = 8.0,
    size: tuple[int, int] = (128, 96),
    heldout_phrasing: bool = False,
    queries_per_minute: float = 1.2,
    first_qid: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> CorpusManifest:
    """Plan a corpus (`world.plan_corpus`), render its videos, write its annotations.

    `workers` > 1 renders videos in that many processes. Annotations and world.json are
    written last, so their presence means every video is complete.
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    corpus = plan_corpus(
        n_videos,
        seed,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        fps=fps,
        size=size,
        heldout_phrasing=heldout_phrasing,
        queries_per_minute=queries_per_minute,
        first_qid=first_qid,
    )
    out_dir = Path(out_dir)
    videos_dir = _prepare_out_dir(out_dir, overwrite)
    files = tuple(
        VideoFile(v.vid, videos_dir / f"{v.vid}.mp4", v.duration_s) for v in corpus.videos
    )
    if progress is not None:
        progress(0, len(files))
    started = time.perf_counter()
    if workers == 1 or len(files) == 1:
        for done, (video, file) in enumerate(zip(corpus.videos, files, strict=True), start=1):
            render_video(video, file.path)
            if progress is not None:
                progress(done, len(files))
    else:
        # fork where there is one: workers start at once and re-import nothing (they only
        # run render_video, which uses no thread or lock of the parent)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [
                    pool.submit(render_video, video, file.path)
                    for video, file in zip(corpus.videos, files, strict=True)
                ]
                for done, future in enumerate(as_completed(futures), start=1):
                    future.result()
                    if progress is not None:
                        progress(done, len(files))
        except BrokenProcessPool as e:
            raise VtrError(f"a video rendering process died ({e}); try one worker") from e
    render_seconds = time.perf_counter() - started
    world_path = write_world(corpus, out_dir / WORLD_NAME)
    annotations_path = write_annotations(corpus, out_dir / ANNOTATIONS_NAME)
    manifest = CorpusManifest(
        out_dir=out_dir,
        annotations_path=annotations_path,
        world_path=world_path,
        videos=files,
        plan=corpus,
        render_seconds=render_seconds,
        workers=workers,
    )
    log.info(
        "synthetic corpus: %d videos, %d queries, %.0f s of video in %.1f s (%.2f s/video-min)",
        len(files),
        len(corpus.queries),
        manifest.video_seconds,
        render_seconds,
        manifest.seconds_per_video_minute,
    )
    return manifest
