"""Decode/encode pipeline with fake collaborators: results equal a sequential reference."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import VtrError
from engine.pipeline import EncodedVideo, FailedVideo, VideoTask, encode_videos


@dataclass(frozen=True)
class FakeClip:
    frames: np.ndarray


class FakeEncoder:
    """Embeds a frame as a fixed random projection of its mean colour per channel."""

    image_size = 4
    embed_dim = 6

    def __init__(self) -> None:
        self.projection = torch.from_numpy(
            np.random.default_rng(0).standard_normal((3, self.embed_dim)).astype(np.float32)
        )
        self.batches: list[int] = []

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).float().permute(0, 3, 1, 2)  # (N, 3, H, W)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        self.batches.append(len(pixels))
        out = pixels.mean(dim=(2, 3)) @ self.projection + 1.0
        return torch.nn.functional.normalize(out, dim=-1).numpy()


def fake_decode(frames_per_clip: int) -> Callable[[Path], Iterator[FakeClip]]:
    def decode(path: Path) -> Iterator[FakeClip]:
        if path.name.startswith("bad"):
            yield FakeClip(np.zeros((frames_per_clip, 2, 2, 3), np.uint8))
            raise VtrError(f"{path}: truncated")
        if path.name.startswith("empty"):
            return
        n_clips = int(path.stem.split("-")[1])
        rng = np.random.default_rng(n_clips)
        for _ in range(n_clips):
            yield FakeClip(rng.integers(0, 255, (frames_per_clip, 2, 2, 3), dtype=np.uint8))

    return decode


def reference(path: Path, encoder: FakeEncoder, frames_per_clip: int) -> np.ndarray:
    clips = [
        encoder.encode_images(encoder.preprocess(c.frames)).mean(0)
        for c in fake_decode(frames_per_clip)(path)
    ]
    stacked = np.stack(clips)
    return stacked / np.linalg.norm(stacked, axis=1, keepdims=True)


@pytest.mark.parametrize(("workers", "frames_per_clip", "batch_size"), [(1, 1, 4), (3, 2, 8)])
def test_matches_sequential_reference(workers: int, frames_per_clip: int, batch_size: int) -> None:
    names = ["v-3", "v-10", "bad-1", "v-1", "empty-0", "v-25"]
    tasks = [VideoTask(i, Path(name + ".mp4")) for i, name in enumerate(names)]
    encoder = FakeEncoder()
    clip_counts: list[int] = []
    results = list(
        encode_videos(
            tasks,
            encoder,
            fake_decode(frames_per_clip),
            probe=lambda path: {"path": str(path)},
            frames_per_clip=frames_per_clip,
            batch_size=batch_size,
            workers=workers,
            on_clips=clip_counts.append,
        )
    )
    by_key = {r.key: r for r in results}
    assert sorted(by_key) == list(range(len(names)))
    assert isinstance(by_key[2], FailedVideo)
    assert "truncated" in by_key[2].error
    assert isinstance(by_key[4], FailedVideo)
    assert by_key[4].error == "no decodable video frames"
    reference_encoder = FakeEncoder()
    for key in (0, 1, 3, 5):
        result = by_key[key]
        assert isinstance(result, EncodedVideo)
        assert result.info == {"path": str(tasks[key].path)}
        np.testing.assert_allclose(
            result.clips, reference(tasks[key].path, reference_encoder, frames_per_clip), atol=1e-6
        )
    assert sum(clip_counts) >= 3 + 10 + 1 + 25
    assert max(encoder.batches) <= batch_size


def test_unexpected_decoder_error_fails_only_that_video() -> None:
    def decode(path: Path) -> Iterator[FakeClip]:
        if path.name == "boom.mp4":
            raise RuntimeError("codec exploded")
        yield FakeClip(np.ones((1, 2, 2, 3), np.uint8))

    tasks = [VideoTask(0, Path("boom.mp4")), VideoTask(1, Path("fine.mp4"))]
    results = {r.key: r for r in encode_videos(tasks, FakeEncoder(), decode, probe=lambda p: None)}
    assert isinstance(results[0], FailedVideo)
    assert "codec exploded" in results[0].error
    assert isinstance(results[1], EncodedVideo)


def test_closing_early_stops_the_decoders() -> None:
    tasks = [VideoTask(i, Path(f"v-{50}.mp4")) for i in range(20)]
    stream = encode_videos(tasks, FakeEncoder(), fake_decode(1), probe=lambda p: None, batch_size=2)
    first = next(stream)
    assert isinstance(first, EncodedVideo)
    stream.close()  # must return promptly, threads stopped
