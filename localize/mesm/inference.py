"""MESM as a `localize.types.Localizer`: one query against many candidate videos.

Inputs follow MESM.md and the official feature pipeline (github lntzm/MESM,
`dataset/*.py`): the query's CLIP token features (after `ln_final`) are cut to the model's
`max_q_l` tokens and L2-normalised one by one; clip rows are L2-normalised per feature
block (`MesmConfig.v_feat_splits`) and get the two TEF dims [t/T, t/T + 1/T]. Outputs
follow the official evaluation: score = softmax(logits)[fg], spans (centre, width) ->
(start, end) * duration, clamped to [0, duration], rounded to multiples of the clip
length, best score first, NMS only when asked. Two deviations, both for playback: after
rounding, ends are clamped to the duration again, and a span that rounded to zero length
is widened to one clip.

Speed: the text is projected once per query; per video, the query-independent work (input
projection, positions, the SS-MESM reconstruction, which depends on the video only) is
cached in an LRU keyed by video id, clip count and a checksum of the clip features (so
the windows of one long video get separate entries). Training-only work (negative pass,
word reconstruction, auxiliary decoder heads) is skipped. fp32 CPU inference goes
through oneDNN with prepacked weights (see `layers.fast_linear`). Reduced precision
(bf16 autocast on CPU or CUDA, fp16 on CUDA) is opt-in: on random weights it reorders
near-tied moments (tests/localize/test_mesm_inference.py, bench/localize.py), so the
default ("auto") is fp32.

    loc = MesmLocalizer.from_checkpoint("mesm.pt", device="auto")
    answers = loc.localize(query, videos, top_k=10)   # one VideoMoments per video

Videos longer than `max_v_l` clips raise InputError: wrap the localizer in
`localize.windowing.WindowedLocalizer`.
"""

import contextlib
import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from engine.errors import ConfigError, InputError
from localize.mesm.checkpoint import load_model
from localize.mesm.config import MesmConfig
from localize.mesm.model import FOREGROUND, MesmModel, TextState, VideoState
from localize.postprocess import nms
from localize.types import Moment, QueryText, VideoClips, VideoMoments

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
TEXT_EPS = 1e-5  # the official text normalisation epsilon
VIDEO_EPS = 1e-12  # torch.nn.functional.normalize's default, as for the official features


def prepare_text(tokens: np.ndarray, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """CLIP token features (L, W) -> (words (L', W), sentence (W,)), L' = min(L, max_tokens).

    Words: each token L2-normalised. Sentence: mean of the L' raw tokens, L2-normalised
    (the official CLIP path; MESM itself does not read it: see `model.py`).
    """
    arr = np.asarray(tokens, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise InputError(f"query tokens must be (tokens, width) with >= 1 token, got {arr.shape}")
    arr = arr[:max_tokens]  # (L', W)
    words = arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), TEXT_EPS)
    mean = arr.mean(axis=0)  # (W,)
    sentence = mean / max(float(np.linalg.norm(mean)), TEXT_EPS)
    return words.astype(np.float32), sentence.astype(np.float32)


def prepare_clips(clips: np.ndarray, config: MesmConfig) -> np.ndarray:
    """Clip embeddings (T, D) -> model rows (T, v_feat_dim): per-block L2 norm, TEF dims."""
    arr = np.asarray(clips, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != config.clip_feat_dim:
        raise InputError(
            f"clips must be (clips >= 1, {config.clip_feat_dim}) for this MESM model, "
            f"got {arr.shape}"
        )
    blocks = config.v_feat_splits or (arr.shape[1],)
    parts = []
    start = 0
    for width in blocks:
        block = arr[:, start : start + width]  # (T, width)
        parts.append(block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), VIDEO_EPS))
        start += width
    if config.use_tef:
        t = arr.shape[0]
        tef_start = np.arange(t, dtype=np.float32) / t  # (T,)
        parts.append(np.stack([tef_start, tef_start + 1.0 / t], axis=1))  # (T, 2)
    return np.concatenate(parts, axis=1).astype(np.float32)  # (T, v_feat_dim)


def spans_to_seconds(
    spans: np.ndarray, duration_s: np.ndarray, clip_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """(N, Q, 2) sigmoid (centre, width), (N,) durations -> start, end (N, Q) seconds.

    Clamp to [0, duration], round to clip multiples (half to even, as torch.round), clamp
    again, widen zero-length spans to one clip.
    """
    dur = duration_s[:, None]  # (N, 1)
    centre, width = spans[..., 0], spans[..., 1]
    start = np.clip((centre - width / 2) * dur, 0.0, dur)  # (N, Q)
    end = np.clip((centre + width / 2) * dur, 0.0, dur)  # (N, Q)
    start = np.clip(np.round(start / clip_seconds) * clip_seconds, 0.0, dur)
    end = np.clip(np.round(end / clip_seconds) * clip_seconds, 0.0, dur)
    empty = end <= start
    end = np.where(empty, np.minimum(start + clip_seconds, dur), end)
    start = np.where(empty & (end <= start), np.maximum(end - clip_seconds, 0.0), start)
    return start, end


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    capacity: int


def _video_key(video: VideoClips) -> tuple[object, ...]:
    arr = np.ascontiguousarray(video.clips)
    raw = arr.data
    return (
        video.video_id,
        arr.shape,
        arr.dtype.str,
        float(video.clip_seconds),
        zlib.crc32(raw),  # windows of one video share its id and length
    )


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for MESM but CUDA is not available")
    return resolved


def _pad_stack(parts: list[torch.Tensor], lengths: list[int]) -> torch.Tensor:
    """(1, T_i, ...) tensors -> (n, max T, ...), zero padded (a plain cat when equal)."""
    longest = max(lengths)
    if all(n == longest for n in lengths):
        return torch.cat(parts)
    out = parts[0].new_zeros((len(parts), longest, *parts[0].shape[2:]))
    for i, (p, n) in enumerate(zip(parts, lengths, strict=True)):
        out[i, :n] = p[0]
    return out


class MesmLocalizer:
    """Stage-2 localizer running a `MesmModel` on candidate videos (see module doc).

    The model is moved to `device` and put in eval mode. `nms_iou`: None keeps all
    `num_queries` moments (the official evaluation); else `localize.postprocess.nms`.
    `cache_size`: videos whose query-independent states are kept (0: no cache);
    `max_batch`: videos per forward pass.
    """

    name = "mesm"

    def __init__(
        self,
        model: MesmModel,
        *,
        device: str = "auto",
        precision: Precision = "auto",
        nms_iou: float | None = None,
        cache_size: int = 256,
        max_batch: int = 64,
    ):
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        if nms_iou is not None and not 0.0 <= nms_iou <= 1.0:
            raise ConfigError(f"nms_iou must be in [0, 1], got {nms_iou}")
        if cache_size < 0 or max_batch < 1:
            raise ConfigError("cache_size must be >= 0 and max_batch >= 1")
        self.device = _resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on CPU")
        self.precision: Precision = "fp32" if precision == "auto" else precision
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.nms_iou = nms_iou
        self.cache_size = cache_size
        self.max_batch = max_batch
        self._cache: OrderedDict[tuple[object, ...], VideoState] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: MesmConfig | None = None,
        **options: object,
    ) -> "MesmLocalizer":
        """Load a vtr or official checkpoint (`checkpoint.load_model`) and wrap it."""
        return cls(load_model(path, config), **options)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ cache

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._cache), self.cache_size)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _encode_missing(self, rows: list[np.ndarray]) -> list[VideoState]:
        """Query-independent states of videos not in the cache, one (1, T, d) per video."""
        states: list[VideoState] = []
        for first in range(0, len(rows), self.max_batch):
            chunk = rows[first : first + self.max_batch]
            longest = max(len(r) for r in chunk)
            feats = np.zeros((len(chunk), longest, self.config.v_feat_dim), dtype=np.float32)
            mask = np.zeros((len(chunk), longest), dtype=bool)
            for i, r in enumerate(chunk):
                feats[i, : len(r)] = r
                mask[i, : len(r)] = True
            batch = self.model.encode_videos(
                torch.from_numpy(feats).to(self.device), torch.from_numpy(mask).to(self.device)
            )
            for i, r in enumerate(chunk):
                t = len(r)
                states.append(
                    VideoState(
                        batch.projed_video[i : i + 1, :t].clone(),  # (1, T, d)
                        batch.position[i : i + 1, :t].clone(),  # (1, T, d)
                        batch.recon_feat[i : i + 1].clone(),  # (1, d)
                        batch.video_mask[i : i + 1, :t].clone(),  # (1, T)
                    )
                )
        return states

    def _video_states(self, videos: Sequence[VideoClips]) -> list[VideoState]:
        keys = [_video_key(v) for v in videos]
        found: dict[int, VideoState] = {}
        with self._lock:
            for i, key in enumerate(keys):
                state = self._cache.get(key)
                if state is not None:
                    self._cache.move_to_end(key)
                    found[i] = state
            self._hits += len(found)
            self._misses += len(videos) - len(found)
        missing = [i for i in range(len(videos)) if i not in found]
        if missing:
            rows = [prepare_clips(videos[i].clips, self.config) for i in missing]
            for i, state in zip(missing, self._encode_missing(rows), strict=True):
                found[i] = state
            if self.cache_size:
                with self._lock:
                    for i in missing:
                        self._cache[keys[i]] = found[i]
                        self._cache.move_to_end(keys[i])
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return [found[i] for i in range(len(videos))]

    # ------------------------------------------------------------------ localize

    def _check(self, videos: Sequence[VideoClips], top_k: int) -> None:
        if top_k < 0:
            raise InputError(f"top_k must be >= 0, got {top_k}")
        for v in videos:
            n = len(v.clips)
            if n < 1:
                raise InputError(f"video {v.video_id} has no clips")
            if n > self.config.max_v_l:
                raise InputError(
                    f"video {v.video_id} has {n} clips; MESM takes at most "
                    f"{self.config.max_v_l} ({self.config.max_v_l * self.config.clip_seconds:g} s)"
                    ": wrap the localizer in localize.windowing.WindowedLocalizer"
                )
            if abs(v.clip_seconds - self.config.clip_seconds) > 1e-6:
                raise InputError(
                    f"video {v.video_id} has {v.clip_seconds:g} s clips; this MESM model was "
                    f"trained on {self.config.clip_seconds:g} s clips"
                )
            if v.duration_s < 0:
                raise InputError(f"video {v.video_id} has a negative duration {v.duration_s}")

    @staticmethod
    def _batches(states: list[VideoState], size: int) -> Iterator[tuple[int, VideoState]]:
        """Consecutive chunks of at most `size` cached states, padded to one length."""
        for first in range(0, len(states), size):
            chunk = states[first : first + size]
            lengths = [s.projed_video.shape[1] for s in chunk]
            yield (
                first,
                VideoState(
                    _pad_stack([s.projed_video for s in chunk], lengths),  # (n, Lv, d)
                    _pad_stack([s.position for s in chunk], lengths),  # (n, Lv, d)
                    torch.cat([s.recon_feat for s in chunk]),  # (n, d)
                    _pad_stack([s.video_mask for s in chunk], lengths),  # (n, Lv) bool
                ),
            )

    def localize(
        self, query: QueryText, videos: Sequence[VideoClips], top_k: int
    ) -> list[VideoMoments]:
        """One `VideoMoments` per video, in input order, at most `top_k` moments each."""
        self._check(videos, top_k)
        if not videos:
            return []
        words, _sentence = prepare_text(query.tokens, self.config.max_q_l)
        if words.shape[1] != self.config.t_feat_dim:
            raise InputError(
                f"query tokens are {words.shape[1]}-d; this MESM model takes "
                f"{self.config.t_feat_dim}-d CLIP token features"
            )
        with torch.inference_mode():
            states = self._video_states(videos)
            logits = np.zeros((len(videos), self.config.num_queries, 2), dtype=np.float32)
            spans = np.zeros_like(logits)
            saliency: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(videos)
            with self._autocast():
                text: TextState = self.model.encode_text(
                    torch.from_numpy(words)[None].to(self.device)  # (1, L, W)
                )
                for first, batch in self._batches(states, self.max_batch):
                    out = self.model.localize(text, batch)
                    n = batch.projed_video.shape[0]
                    logits[first : first + n] = out["pred_logits"].float().cpu().numpy()
                    spans[first : first + n] = out["pred_spans"].float().cpu().numpy()
                    sal = out["saliency_scores"].float().cpu().numpy()  # (n, Lv)
                    for i in range(n):
                        saliency[first + i] = sal[i, : states[first + i].projed_video.shape[1]]
        return self._answers(videos, logits, spans, saliency, top_k)

    def _answers(
        self,
        videos: Sequence[VideoClips],
        logits: np.ndarray,
        spans: np.ndarray,
        saliency: list[np.ndarray],
        top_k: int,
    ) -> list[VideoMoments]:
        z = logits - logits.max(-1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        scores = prob[..., FOREGROUND]  # (N, Q)
        duration = np.array(
            [v.duration_s if v.duration_s > 0 else len(v.clips) * v.clip_seconds for v in videos],
            dtype=np.float64,
        )
        start, end = spans_to_seconds(spans.astype(np.float64), duration, self.config.clip_seconds)
        answers = []
        for i, video in enumerate(videos):
            order = np.argsort(-scores[i], kind="stable")
            moments = [
                Moment(float(start[i, q]), float(end[i, q]), float(scores[i, q])) for q in order
            ]
            if self.nms_iou is not None:
                moments = nms(moments, self.nms_iou, top_k)
            answers.append(
                VideoMoments(video.video_id, moments[:top_k], saliency[i].astype(np.float32))
            )
        return answers
