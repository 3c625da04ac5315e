"""A tiny encoder configuration and level layout for brief training runs in tests."""

import numpy as np

from engine.train_encoder.model import EncoderConfig
from engine.train_encoder.train import SpanLayout

TINY = EncoderConfig(
    image_size=32,
    vision="resnet",
    vision_width=8,
    vision_layers=1,
    text_width=32,
    text_layers=1,
    head_width=16,
    context_length=32,
    embed_dim=32,
)


def _layout(clips: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    n = len(clips)
    windows = [(s, min(n, s + 4)) for s in range(0, max(1, n - 2), 2)]
    return {"action": windows, "entity": [(0, n // 2), (n // 2, n)]}


LAYOUT = SpanLayout(_layout, {"action_window_clips": 4})  # 4-clip windows every 2 clips
