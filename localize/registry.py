"""The localizer table: one `create_localizer` for every stage-2 localizer.

- `similarity`: training-free (text-clip cosine curve -> moment proposals).
- `mesm`: MESM from a checkpoint (vtr's own, or an official one); without one, the
  checkpoint vtr ships for the collection's encoder (`models/mesm-<encoder>.pt`), if any,
  once the encoder's weights are checked to be the ones it was trained on
  (`models/features.json`: encoder -> sha256 of its weights file).
- `spans`: multi-length spans embedded by the level strategy's action embedding
  (`LocalizerOptions.span_embedder`), scored by cosine with the query.
`similarity` and `mesm` are wrapped in long-video windowing, so a video longer than
`max_clips` is localized in overlapping windows anywhere in it; `spans` takes any length.
"""

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.encoder_registry import resolve_encoder
from engine.errors import ConfigError, ModelError
from engine.sources import sha256_file
from localize.similarity import SimilarityLocalizer
from localize.spans import SpanEmbedder, SpanLocalizer
from localize.types import Localizer
from localize.windowing import WindowedLocalizer


@dataclass(frozen=True)
class LocalizerOptions:
    checkpoint: str = ""
    encoder: str = ""  # `mesm` without a checkpoint: the one shipped for this encoder
    device: str = "auto"
    max_clips: int = 75
    overlap_clips: int = 15
    max_windows: int = 16
    nms_iou: float = 0.5
    span_embedder: SpanEmbedder | None = None  # `spans`: the collection's action embedding


def _similarity(options: LocalizerOptions) -> Localizer:
    return SimilarityLocalizer(nms_iou=options.nms_iou)


def _mesm(options: LocalizerOptions) -> Localizer:
    from localize.mesm.inference import MesmLocalizer  # torch model: only when asked for

    path = (
        Path(options.checkpoint) if options.checkpoint else shipped_mesm_checkpoint(options.encoder)
    )
    if path is None:
        shipped = ", ".join(shipped_mesm_encoders()) or "no encoder"
        raise ConfigError(
            "localizer.name = 'mesm' needs localizer.checkpoint (a vtr or official MESM "
            f"checkpoint file; vtr ships one for {shipped}, not for {options.encoder or '?'}); "
            "or use localizer.name = 'spans' or 'similarity'"
        )
    if not path.is_file():
        raise ConfigError(f"MESM checkpoint not found: {path}")
    if not options.checkpoint:
        check_shipped_features(options.encoder)
    return MesmLocalizer.from_checkpoint(path, device=options.device, nms_iou=options.nms_iou)


def _spans(options: LocalizerOptions) -> Localizer:
    if options.span_embedder is None:
        raise ConfigError("localizer.name = 'spans' needs the level strategy's span embedding")
    return SpanLocalizer(options.span_embedder, nms_iou=options.nms_iou)


MODELS_DIR = Path(__file__).parent / "models"
SHIPPED_MESM_PREFIX = "mesm-"  # models/mesm-<encoder>.pt
SHIPPED_MESM_FEATURES = "features.json"  # in MODELS_DIR


def shipped_mesm_checkpoint(encoder: str) -> Path | None:
    """The MESM checkpoint shipped for features of `encoder`, if vtr ships one."""
    path = MODELS_DIR / f"{SHIPPED_MESM_PREFIX}{encoder}.pt"
    return path if encoder and path.is_file() else None


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int) -> str:
    del mtime_ns  # part of the cache key: a rewritten file is hashed again
    return sha256_file(Path(path))


def check_shipped_features(encoder: str) -> None:
    """Raise unless `encoder`'s weights file is the one whose features the shipped MESM
    for it was trained on: a MESM only fits the features it learnt from."""
    record = MODELS_DIR / SHIPPED_MESM_FEATURES
    trained_on = json.loads(record.read_text()).get(encoder) if record.is_file() else None
    if trained_on is None:
        raise ModelError(f"internal: {record} has no entry for {encoder!r}")
    weights = Path(resolve_encoder(encoder).weights)
    if not weights.is_file():
        raise ConfigError(f"the weights of encoder {encoder!r} are missing: {weights}")
    if _sha256(str(weights), weights.stat().st_mtime_ns) != trained_on:
        raise ConfigError(
            f"the MESM shipped for {encoder!r} was trained on the features of other "
            f"{encoder!r} weights than {weights}; set localizer.checkpoint to a MESM "
            "trained on these features, or use localizer.name = 'spans' or 'similarity'"
        )


def shipped_mesm_encoders() -> list[str]:
    """Encoders vtr ships a MESM checkpoint for."""
    paths = MODELS_DIR.glob(f"{SHIPPED_MESM_PREFIX}*.pt")
    return sorted(p.stem.removeprefix(SHIPPED_MESM_PREFIX) for p in paths)


LOCALIZERS: dict[str, Callable[[LocalizerOptions], Localizer]] = {
    "similarity": _similarity,
    "mesm": _mesm,
    "spans": _spans,
}


def create_localizer(name: str, options: LocalizerOptions) -> Localizer:
    """Build the named localizer, windowed for long videos."""
    try:
        factory = LOCALIZERS[name]
    except KeyError as e:
        raise ConfigError(
            f"unknown localizer {name!r}; known: {', '.join(sorted(LOCALIZERS))}"
        ) from e
    inner = factory(options)
    if isinstance(inner, SpanLocalizer):
        return inner  # linear in the video's length: no windows needed
    max_clips = getattr(getattr(inner, "config", None), "max_v_l", options.max_clips)
    return WindowedLocalizer(
        inner,
        max_clips=max_clips,
        overlap_clips=min(options.overlap_clips, max_clips - 1),
        max_windows=options.max_windows,
        nms_iou=options.nms_iou,
    )
