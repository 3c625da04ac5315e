"""Decode/encode pipeline: videos in, per-clip embeddings out, decode and encode overlapped.

Decoder threads (`workers`) each take one video at a time, decode its clips with PyAV,
preprocess the frames for the encoder and queue them in chunks; the calling thread
gathers chunks from any videos into batches of `batch_size` frames and runs the image
encoder. A video's result is yielded as soon as its last chunk is encoded, so memory
stays bounded by the queue, not by video length. A video that fails to decode is
yielded as `FailedVideo` and the rest go on. Collaborators (`decode_clips`, `probe`) are
arguments so tests can pass fakes. Run: see `index/ingest.py` and `bench/ingest.py`.
"""

import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from engine.errors import VtrError

log = logging.getLogger(__name__)


class ClipLike(Protocol):
    @property
    def frames(self) -> np.ndarray: ...  # (frames_per_clip, H, W, 3) uint8


class ImageEncoder(Protocol):
    @property
    def image_size(self) -> int: ...
    @property
    def embed_dim(self) -> int: ...
    @property
    def motion_gap_s(self) -> float: ...  # 0, or the gap of a motion tower's frame pairs

    def preprocess(self, frames: np.ndarray) -> torch.Tensor: ...

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray: ...


DecodeClips = Callable[[Path], Iterable[ClipLike]]
Probe = Callable[[Path], Any]


@dataclass(frozen=True)
class VideoTask:
    key: int  # the caller's id for this video (the catalog's video id)
    path: Path


@dataclass(frozen=True)
class EncodedVideo:
    key: int
    path: Path
    info: Any  # what `probe` returned (engine.decode.VideoInfo)
    clips: np.ndarray  # (n_clips, embed_dim) float32, L2-normalised


@dataclass(frozen=True)
class FailedVideo:
    key: int
    path: Path
    error: str


@dataclass(frozen=True)
class _Chunk:
    key: int
    pixels: torch.Tensor  # (n_clips * frames_per_clip, C, S, S)
    n_clips: int


@dataclass(frozen=True)
class _Done:
    key: int
    info: Any


@dataclass(frozen=True)
class _Failed:
    key: int
    error: str


_WORKER_EXIT = object()


def _average_frames(embeddings: np.ndarray, n_clips: int) -> np.ndarray:
    """(n_clips * F, D) frame embeddings -> (n_clips, D) clip embeddings, re-normalised."""
    clips = embeddings.reshape(n_clips, -1, embeddings.shape[-1]).mean(axis=1)
    norms = np.linalg.norm(clips, axis=1, keepdims=True)
    result: np.ndarray = (clips / np.maximum(norms, 1e-12)).astype(np.float32)
    return result


class _Decoders:
    """Decoder threads feeding one bounded queue."""

    def __init__(
        self,
        tasks: Sequence[VideoTask],
        encoder: ImageEncoder,
        decode_clips: DecodeClips,
        probe: Probe,
        chunk_clips: int,
        workers: int,
        queue_chunks: int,
    ) -> None:
        self.out: queue.Queue[object] = queue.Queue(maxsize=queue_chunks)
        self._todo: queue.SimpleQueue[VideoTask] = queue.SimpleQueue()
        for task in tasks:
            self._todo.put(task)
        self._stop = threading.Event()
        self._encoder = encoder
        self._decode_clips = decode_clips
        self._probe = probe
        self._chunk_clips = chunk_clips
        self.threads = [
            threading.Thread(target=self._run, name=f"vtr-decode-{i}", daemon=True)
            for i in range(max(1, min(workers, len(tasks))))
        ]
        for thread in self.threads:
            thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode_one(self, task: VideoTask) -> None:
        info = self._probe(task.path)
        frames: list[np.ndarray] = []
        n_clips = 0
        for clip in self._decode_clips(task.path):
            frames.append(clip.frames)
            n_clips += 1
            if n_clips == self._chunk_clips:
                if not self._put(
                    _Chunk(task.key, self._encoder.preprocess(np.concatenate(frames)), n_clips)
                ):
                    return
                frames, n_clips = [], 0
        if n_clips:
            self._put(_Chunk(task.key, self._encoder.preprocess(np.concatenate(frames)), n_clips))
        self._put(_Done(task.key, info))

    def _run(self) -> None:
        torch.set_num_threads(1)  # preprocessing is light; leave the cores to the encoder
        while not self._stop.is_set():
            try:
                task = self._todo.get_nowait()
            except queue.Empty:
                break
            try:
                self._decode_one(task)
            except VtrError as e:
                self._put(_Failed(task.key, str(e)))
            except Exception as e:  # one bad file must not end the batch
                log.exception("unexpected error decoding %s", task.path)
                self._put(_Failed(task.key, f"unexpected {type(e).__name__}: {e}"))
        self._put(_WORKER_EXIT)

    def stop(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=5)


def encode_videos(
    tasks: Sequence[VideoTask],
    encoder: ImageEncoder,
    decode_clips: DecodeClips,
    probe: Probe,
    *,
    frames_per_clip: int = 1,
    batch_size: int = 64,
    workers: int = 2,
    on_clips: Callable[[int], None] | None = None,
) -> Generator[EncodedVideo | FailedVideo, None, None]:
    """Decode and encode `tasks`; yield each video's result as soon as it is complete.

    `decode_clips(path)` yields clips whose `.frames` hold `frames_per_clip` frames;
    `on_clips(n)` is called after each encoder batch with the number of clips encoded.
    """
    if not tasks:
        return
    paths = {task.key: task.path for task in tasks}
    chunk_clips = max(1, batch_size // frames_per_clip)
    decoders = _Decoders(
        tasks, encoder, decode_clips, probe, chunk_clips, workers, queue_chunks=2 * workers + 2
    )
    partial: dict[int, list[np.ndarray]] = {}
    running = len(decoders.threads)
    try:
        while running:
            items = [decoders.out.get()]
            frames = items[0].pixels.shape[0] if isinstance(items[0], _Chunk) else 0
            while frames < batch_size:
                try:
                    item = decoders.out.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                frames += item.pixels.shape[0] if isinstance(item, _Chunk) else 0
            chunks = [item for item in items if isinstance(item, _Chunk)]
            if chunks:
                pixels = torch.cat([chunk.pixels for chunk in chunks])
                embeddings = np.concatenate(
                    [
                        encoder.encode_images(pixels[start : start + batch_size])
                        for start in range(0, len(pixels), batch_size)
                    ]
                )  # (frames, D)
                start = 0
                for chunk in chunks:
                    stop = start + chunk.pixels.shape[0]
                    partial.setdefault(chunk.key, []).append(
                        _average_frames(embeddings[start:stop], chunk.n_clips)
                    )
                    start = stop
                if on_clips is not None:
                    on_clips(sum(chunk.n_clips for chunk in chunks))
            for item in items:
                if item is _WORKER_EXIT:
                    running -= 1
                elif isinstance(item, _Done):
                    parts = partial.pop(item.key, [])
                    if not parts:
                        yield FailedVideo(item.key, paths[item.key], "no decodable video frames")
                        continue
                    yield EncodedVideo(item.key, paths[item.key], item.info, np.concatenate(parts))
                elif isinstance(item, _Failed):
                    partial.pop(item.key, None)
                    yield FailedVideo(item.key, paths[item.key], item.error)
    finally:
        decoders.stop()
