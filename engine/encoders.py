"""Image and text encoders (CLIP-style), built from the table in `engine.encoder_registry`.

One factory, `create_encoder(name_or_spec, device)`, returns an `Encoder` for either
backend: open_clip (CLIP, e.g. OpenAI ViT-B/32, Radford et al. 2021), Hugging Face
transformers (CLIP, SigLIP), or vtr (an open_clip CLIP from a `vtr train encoder`
checkpoint). Every encoder offers
- `preprocess(frames)`: uint8 frames (N, H, W, 3) -> normalised pixels (N, 3, S, S), in
  torch, batched (shortest side to S and centre crop, or a squash for SigLIP);
- `encode_images(pixels)`: (N, embed_dim) float32, L2-normalised, in the joint space;
- `motion_gap_s`: 0 for a single-frame image tower; > 0 for a motion tower (only vtr
  checkpoints have one), which sees each frame with the frame `motion_gap_s` later:
  `iter_clips(..., motion_gap_s=encoder.motion_gap_s)` decodes the pairs, `preprocess`
  turns 2N frames into (N, 6, S, S) pixels (the frame, then the later frame minus it);
- `encode_text(texts, max_tokens)`: `TextFeatures` with the sentence embedding in the
  joint space and the per-token features MESM consumes (shared/docs/MESM.md "Inputs"):
  token ids `[SOT] + up to max_tokens - 2 BPE tokens + [EOT]` padded to the context
  length, the text transformer's last hidden state after `ln_final` (not projected, not
  normalised), its first `max_tokens` positions, padding zeroed.

Weights never download at import. A pretrained tag is looked up in the local cache first;
with `HF_HUB_OFFLINE=1` (or no network) a missing file is a `ModelError` that says how to
provide it. `device="auto"` runs on CUDA in float16 when available, else on CPU in float32.

    from engine.encoders import create_encoder
    encoder = create_encoder("tiny-random")           # no weights needed
    frames = iter_clips(path, short_side=encoder.image_size, motion_gap_s=encoder.motion_gap_s)
    clips = encode_video_clips(encoder, frames, 64)
"""

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from engine.encoder_registry import (
    RANDOM_WEIGHTS,
    EncoderSpec,
    inline_model_config,
    list_encoders,
    register_encoder,
    resolve_encoder,
)
from engine.errors import InputError, ModelError

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_BATCH = 256  # texts per text-tower forward pass

__all__ = [
    "Encoder",
    "EncoderSpec",
    "ImageTransform",
    "TextFeatures",
    "create_encoder",
    "encode_video_clips",
    "list_encoders",
    "register_encoder",
    "resolve_device",
    "resolve_encoder",
]


@dataclass(frozen=True)
class TextFeatures:
    """What the text side gives the retriever and the localizer."""

    sentence: np.ndarray  # (B, embed_dim) float32, L2-normalised, joint space
    tokens: np.ndarray  # (B, max_tokens, token_dim) float32, last hidden state, padding zeroed
    mask: np.ndarray  # (B, max_tokens) bool, True on SOT, BPE tokens and EOT


@dataclass(frozen=True)
class ImageTransform:
    """How frames become model input."""

    size: int  # S: the model's input is S x S
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: Literal["shortest", "squash"] = "shortest"  # shortest: resize + centre crop
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    motion_gap_s: float = 0.0  # > 0: frames come in pairs this far apart (motion input)

    @property
    def channels(self) -> int:
        return image_channels(self.motion_gap_s)


def image_channels(motion_gap_s: float) -> int:
    """Input channels of an image tower: 3, or 6 for frame pairs (`motion_gap_s` > 0)."""
    return 6 if motion_gap_s > 0 else 3


def motion_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """(2N, 3, S, S) normalised frames, each followed by its later frame -> (N, 6, S, S):
    the frame, then the later frame minus it."""
    if len(pixels) % 2:
        raise InputError(f"a motion encoder takes frames in pairs, got {len(pixels)} frames")
    pairs = pixels.reshape(-1, 2, *pixels.shape[1:])  # (N, 2, 3, S, S)
    return torch.cat([pairs[:, 0], pairs[:, 1] - pairs[:, 0]], dim=1).contiguous()


def preprocess_frames(frames: np.ndarray, transform: ImageTransform) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, S, S) float32 normalised, on the CPU; with a
    motion transform, N frames in pairs -> (N / 2, 6, S, S) (`motion_pixels`)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if transform.motion_gap_s > 0:
        return motion_pixels(preprocess_frames(frames, replace(transform, motion_gap_s=0.0)))
    size = transform.size
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    height, width = x.shape[-2:]  # x: (N, 3, H, W) in [0, 1]
    if transform.resize_mode == "squash":
        target = (size, size)
    else:
        scale = size / min(height, width)
        target = (max(size, round(height * scale)), max(size, round(width * scale)))
    if (height, width) != target:
        x = F.interpolate(
            x, size=target, mode=transform.interpolation, align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)  # (N, 3, H', W')
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    x = x[:, :, top : top + size, left : left + size]  # (N, 3, S, S)
    mean = torch.tensor(transform.mean).view(1, 3, 1, 1)
    std = torch.tensor(transform.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def resolve_device(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """A device name -> (device, dtype); `auto` is CUDA in float16 when present, else CPU.

    Also "cpu" (float32) and "cuda" / "cuda:i" (float16).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"encoder device {device!r} asked for, but torch sees no CUDA device; "
                "use device 'auto' or 'cpu'"
            )
        return torch.device(device), torch.float16
    if device != "cpu":
        raise ModelError(f"unknown encoder device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return torch.device("cpu"), torch.float32


class Encoder(ABC):
    """An image encoder and a text encoder sharing one embedding space."""

    name: str
    embed_dim: int  # joint-space dimension (image and sentence embeddings)
    token_dim: int  # text transformer width (token features)
    context_length: int  # text tokens the text tower takes
    transform: ImageTransform
    device: torch.device
    dtype: torch.dtype

    @property
    def image_size(self) -> int:
        return self.transform.size

    @property
    def motion_gap_s(self) -> float:
        """0, or how far after each frame its pair's later frame lies (motion tower)."""
        return self.transform.motion_gap_s

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, C, S, S) float32 on the CPU (safe in worker threads);
        C = 3, or 6 with N / 2 rows for a motion tower."""
        return preprocess_frames(frames, self.transform)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) preprocessed pixels -> (N, embed_dim) float32, L2-normalised."""
        expected = (self.transform.channels, self.image_size, self.image_size)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise InputError(
                f"pixels must be (N, {', '.join(map(str, expected))}), got {tuple(pixels.shape)}"
            )
        if len(pixels) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        with torch.inference_mode():
            x = pixels.to(self.device, self.dtype, non_blocking=True)
            features = self._image_features(x).float()  # (N, embed_dim)
            result: np.ndarray = F.normalize(features, dim=-1).cpu().numpy()
        return result

    def encode_text(self, texts: Sequence[str], max_tokens: int = 32) -> TextFeatures:
        """Sentence embeddings and `max_tokens` token features per text (see module doc)."""
        if isinstance(texts, str):
            raise InputError("encode_text takes a list of strings, not one string")
        if not 2 <= max_tokens <= self.context_length:
            raise InputError(f"max_tokens must be in [2, {self.context_length}], got {max_tokens}")
        sentences, tokens, masks = [], [], []
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_BATCH):
                batch = list(texts[start : start + TEXT_BATCH])
                sentence, hidden, mask = self._text_features(batch, max_tokens)
                # sentence (b, D); hidden (b, max_tokens, token_dim); mask (b, max_tokens)
                sentences.append(F.normalize(sentence.float(), dim=-1).cpu().numpy())
                tokens.append((hidden.float() * mask[..., None].to(hidden.device)).cpu().numpy())
                masks.append(mask.cpu().numpy().astype(bool))
        if not texts:
            return TextFeatures(
                np.zeros((0, self.embed_dim), np.float32),
                np.zeros((0, max_tokens, self.token_dim), np.float32),
                np.zeros((0, max_tokens), bool),
            )
        return TextFeatures(
            np.concatenate(sentences).astype(np.float32),
            np.concatenate(tokens).astype(np.float32),
            np.concatenate(masks),
        )

    @abstractmethod
    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) on device -> (N, embed_dim), not normalised."""

    @abstractmethod
    def _text_features(
        self, texts: list[str], max_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> sentence (b, embed_dim), hidden (b, max_tokens, token_dim), mask (b, max_tokens)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, embed_dim={self.embed_dim}, "
            f"image_size={self.image_size}, device={self.device}, dtype={self.dtype})"
        )


class _BpeTokenizer(Protocol):
    sot_token_id: int
    eot_token_id: int
    context_length: int

    def encode(self, text: str) -> list[int]: ...


def clip_token_ids(
    tokenizer: _BpeTokenizer, bpe: Sequence[Sequence[int]], max_bpe: int, context_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[SOT] + BPE[:max_bpe] + [EOT]`, zero-padded -> ids (B, context) and lengths (B,)."""
    ids = torch.zeros(len(bpe), context_length, dtype=torch.long)
    lengths = torch.zeros(len(bpe), dtype=torch.long)
    for i, tokens in enumerate(bpe):
        row = [tokenizer.sot_token_id, *tokens[:max_bpe], tokenizer.eot_token_id]
        ids[i, : len(row)] = torch.tensor(row)
        lengths[i] = len(row)
    return ids, lengths


class OpenClipEncoder(Encoder):
    """An open_clip CLIP model (standard text tower with `ln_final`)."""

    def __init__(
        self,
        name: str,
        model: Any,
        tokenizer: _BpeTokenizer,
        transform: ImageTransform,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.name, self.model, self.tokenizer = name, model.eval(), tokenizer
        self.transform, self.device, self.dtype = transform, device, dtype
        text = getattr(model, "text", model)  # CustomTextCLIP keeps the tower in `.text`
        if not hasattr(text, "ln_final") or getattr(text, "cls_emb", None) is not None:
            raise ModelError(f"encoder {name!r}: its text tower has no per-token ln_final output")
        self._ln_final = text.ln_final
        self._hook_lock = threading.Lock()
        self.token_dim = int(text.ln_final.normalized_shape[0])
        self.context_length = int(getattr(text, "context_length", tokenizer.context_length))
        self.embed_dim = _open_clip_embed_dim(model)
        from open_clip.model import CLIP  # the model is built: open_clip is loaded already

        # Plain CLIP text towers are causal: `_short_tower` may skip the padding positions.
        self._causal_clip = (
            isinstance(model, CLIP)
            and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "last")
        )

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model.encode_image(pixels)
        return out

    def _tower(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (b, context) -> pooled+projected (b, embed_dim), ln_final output (b, context, W)."""
        if self._causal_clip:
            return self._short_tower(ids)
        captured: list[torch.Tensor] = []
        with self._hook_lock:  # one hooked forward at a time (the API encodes from threads)
            handle = self._ln_final.register_forward_hook(lambda _m, _i, out: captured.append(out))
            try:
                sentence: torch.Tensor = self.model.encode_text(ids.to(self.device))
            finally:
                handle.remove()
        return sentence, captured[-1]

    def _short_tower(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`_tower` on only the positions up to the longest text's EOT.

        CLIP's text transformer is causal: no position attends to a later one, so the
        outputs at positions before the cut are exactly those of the full 77-position
        pass, and the EOT-pooled sentence embedding too; padding after EOT never matters.
        Typical queries take 10-20 positions, several times less work than 77.
        """
        from open_clip.transformer import text_global_pool

        model = self.model
        seq = max(int((ids != 0).sum(dim=1).max()), 1)
        short = ids[:, :seq].to(self.device)  # (b, seq)
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(short).to(cast) + model.positional_embedding[:seq].to(cast)
        x = model.transformer(x, attn_mask=model.attn_mask[:seq, :seq])  # (b, seq, W)
        x = model.ln_final(x)
        pooled = text_global_pool(
            x, short, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
        )
        projection = model.text_projection
        sentence = (
            projection(pooled) if isinstance(projection, torch.nn.Linear) else pooled @ projection
        )
        hidden = x.new_zeros((x.shape[0], ids.shape[1], x.shape[2]))  # (b, context, W)
        hidden[:, :seq] = x
        return sentence, hidden

    def _text_features(
        self, texts: list[str], max_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        context = self.context_length
        bpe = [self.tokenizer.encode(text) for text in texts]
        window, lengths = clip_token_ids(self.tokenizer, bpe, max_tokens - 2, context)
        full, _ = clip_token_ids(self.tokenizer, bpe, context - 2, context)
        sentence, hidden = self._tower(window)  # (b, embed_dim), (b, context, W)
        longer = (window != full).any(dim=1)  # texts whose window cut BPE tokens off
        if longer.any():
            sentence = sentence.clone()
            sentence[longer.to(sentence.device)] = self._tower(full[longer])[0]
        mask = torch.arange(max_tokens)[None, :] < lengths[:, None]  # (b, max_tokens)
        return sentence, hidden[:, :max_tokens], mask


def _open_clip_embed_dim(model: Any) -> int:
    visual = model.visual
    output_dim = getattr(visual, "output_dim", None)
    if output_dim:
        return int(output_dim)
    raise ModelError("cannot tell the open_clip model's embedding size")


class HfEncoder(Encoder):
    """A transformers CLIPModel or SiglipModel."""

    def __init__(
        self,
        name: str,
        model: Any,
        tokenizer: Any,
        transform: ImageTransform,
        context_length: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.name, self.model, self.tokenizer = name, model.eval(), tokenizer
        self.transform, self.device, self.dtype = transform, device, dtype
        config = model.config
        self.model_type: str = config.model_type
        self.context_length = context_length
        self.token_dim = int(config.text_config.hidden_size)
        projection = getattr(config, "projection_dim", None) if self.model_type == "clip" else None
        self.embed_dim = int(
            projection
            or getattr(config.text_config, "projection_size", None)
            or config.text_config.hidden_size
        )
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=pixels)
        pooled: torch.Tensor = out.pooler_output if hasattr(out, "pooler_output") else out
        return pooled

    def _ids(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenised, truncated to `max_length` (special tokens kept), padded to the context."""
        encoded = self.tokenizer(texts, truncation=True, max_length=max_length, padding=False)
        ids = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        lengths = torch.zeros(len(texts), dtype=torch.long)
        for i, row in enumerate(encoded["input_ids"]):
            ids[i, : len(row)] = torch.tensor(row)
            lengths[i] = len(row)
        return ids, lengths

    def _tower(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = None
        if self.model_type == "clip":  # SigLIP was trained on padded text without a mask
            attention = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
            attention = attention.to(self.device)
        out = self.model.get_text_features(input_ids=ids.to(self.device), attention_mask=attention)
        return out.pooler_output, out.last_hidden_state  # (b, embed_dim), (b, context, W)

    def _text_features(
        self, texts: list[str], max_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        window, lengths = self._ids(texts, max_tokens)
        full, full_lengths = self._ids(texts, self.context_length)
        sentence, hidden = self._tower(window, lengths)
        longer = lengths != full_lengths
        if longer.any():
            sentence = sentence.clone()
            sentence[longer.to(sentence.device)] = self._tower(full[longer], full_lengths[longer])[
                0
            ]
        mask = torch.arange(max_tokens)[None, :] < lengths[:, None]  # (b, max_tokens)
        return sentence, hidden[:, :max_tokens], mask


def hub_offline() -> bool:
    """Whether the hub must not be contacted: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set.

    huggingface_hub reads HF_HUB_OFFLINE once, at import; set it before starting vtr so that
    library never touches the network either.
    """
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    on = any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)
    return on or bool(constants.HF_HUB_OFFLINE)


def _weights_help(spec: EncoderSpec) -> str:
    if spec.backend == "hf":
        return (
            f"download the model on a machine with internet access "
            f"(`huggingface-cli download {spec.arch}`), then copy the Hugging Face cache "
            f"(~/.cache/huggingface, or HF_HOME) here, or save the model to a directory and set "
            f"the encoder to hf:/path/to/that/directory"
        )
    return (
        f"download the checkpoint on a machine with internet access (open_clip "
        f"`create_model('{spec.arch}', pretrained='{spec.weights}')` stores it in the Hugging Face "
        f"cache), then copy that cache here, or copy the .pt/.bin/.safetensors file and set the "
        f"encoder to open_clip:{spec.arch}:/path/to/file"
    )


def _fetch_open_clip_tag(spec: EncoderSpec, tag_cfg: dict[str, Any], cache_dir: Path | None) -> str:
    """The local path of a pretrained tag's checkpoint: from the cache, else the hub."""
    from huggingface_hub import hf_hub_download

    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        raise ModelError(
            f"encoder {spec.name!r}: pretrained tag {spec.weights!r} of {spec.arch} has no "
            f"Hugging Face hub entry; {_weights_help(spec)}"
        )
    repo_id, filename = os.path.split(hub.rstrip("/") if hub.endswith("/") else hub)
    if hub.endswith("/"):
        repo_id, filenames = (
            hub.rstrip("/"),
            ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
        )
    else:
        stem = os.path.splitext(filename)[0]
        filenames = [f"{stem}.safetensors", filename]
    offline = hub_offline()
    errors: list[str] = []
    for local_only in (True, False) if not offline else (True,):
        for name in filenames:
            try:
                path: str = hf_hub_download(
                    repo_id, name, cache_dir=cache_dir, local_files_only=local_only
                )
                return path
            except Exception as e:  # noqa: BLE001 - every hub failure means "not available"
                errors.append(f"{name}: {type(e).__name__}")
    where = (
        "the local cache (offline: HF_HUB_OFFLINE is set)" if offline else "the cache or the hub"
    )
    raise ModelError(
        f"encoder {spec.name!r}: weights for {spec.arch} pretrained={spec.weights!r} "
        f"({repo_id}) are not in {where} [{'; '.join(errors)}]; {_weights_help(spec)}"
    )


def _build_open_clip(
    spec: EncoderSpec, device: torch.device, dtype: torch.dtype, cache_dir: Path | None
) -> OpenClipEncoder:
    import open_clip

    inline = inline_model_config(spec.arch)
    if inline is None and spec.arch not in open_clip.list_models():
        raise ModelError(
            f"encoder {spec.name!r}: unknown open_clip architecture {spec.arch!r} "
            f"(see open_clip.list_models(), e.g. ViT-B-32, ViT-B-16, ViT-L-14)"
        )
    config = inline if inline is not None else open_clip.get_model_config(spec.arch)
    weights_path: str | None = None
    tag_cfg: dict[str, Any] = {}
    if spec.weights == RANDOM_WEIGHTS:
        pass
    elif Path(spec.weights).expanduser().is_file():
        weights_path = str(Path(spec.weights).expanduser())
    elif inline is None and (tag_cfg := open_clip.get_pretrained_cfg(spec.arch, spec.weights)):
        weights_path = _fetch_open_clip_tag(spec, tag_cfg, cache_dir)
    else:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch) if inline is None else []
        raise ModelError(
            f"encoder {spec.name!r}: weights {spec.weights!r} are neither a file that exists nor "
            f"a pretrained tag of {spec.arch} (tags: {', '.join(tags) or 'none'}; or 'random')"
        )
    quick_gelu = bool(tag_cfg.get("quick_gelu", config.get("quick_gelu", False)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)  # random init is reproducible
        try:
            if inline is not None:
                model = open_clip.model.CLIP(**{**config, "quick_gelu": quick_gelu})
                if weights_path is not None:
                    open_clip.load_checkpoint(model, weights_path)
            else:
                model = open_clip.create_model(
                    spec.arch, pretrained=weights_path, force_quick_gelu=quick_gelu
                )
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            raise ModelError(f"encoder {spec.name!r}: cannot load {weights_path}: {e}") from e
    model = model.to(device=device, dtype=dtype)
    tokenizer = (
        open_clip.get_tokenizer(spec.arch)
        if inline is None
        else (
            open_clip.tokenizer.SimpleTokenizer(
                context_length=config["text_cfg"].get("context_length", 77)
            )
        )
    )
    if not hasattr(tokenizer, "sot_token_id"):
        raise ModelError(f"encoder {spec.name!r}: token features need CLIP's BPE tokenizer")
    preprocess_cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = config["vision_cfg"]["image_size"]
    transform = ImageTransform(
        size=int(size if isinstance(size, int) else size[0]),
        mean=tuple(tag_cfg.get("mean", preprocess_cfg.get("mean", OPENAI_MEAN))),
        std=tuple(tag_cfg.get("std", preprocess_cfg.get("std", OPENAI_STD))),
        resize_mode="squash" if tag_cfg.get("resize_mode") == "squash" else "shortest",
    )
    return OpenClipEncoder(spec.name, model, tokenizer, transform, device, dtype)


def _build_hf(
    spec: EncoderSpec, device: torch.device, dtype: torch.dtype, cache_dir: Path | None
) -> HfEncoder:
    import transformers

    local_dir = Path(spec.arch).expanduser()
    source = str(local_dir) if local_dir.is_dir() else spec.arch
    offline = hub_offline() or local_dir.is_dir()

    def load(factory: Any, **kwargs: Any) -> Any:
        attempts = (True,) if offline else (True, False)
        error: Exception | None = None
        for local_only in attempts:
            try:
                return factory.from_pretrained(
                    source, cache_dir=cache_dir, local_files_only=local_only, **kwargs
                )
            except OSError as e:  # transformers reports a missing model as OSError
                error = e
            except (ImportError, ValueError) as e:  # e.g. SigLIP's tokenizer needs sentencepiece
                raise ModelError(f"encoder {spec.name!r}: cannot load {source!r}: {e}") from e
        raise ModelError(
            f"encoder {spec.name!r}: cannot load {source!r} ({error}); {_weights_help(spec)}"
        ) from error

    model = load(transformers.AutoModel, dtype=dtype)
    if model.config.model_type not in ("clip", "siglip"):
        raise ModelError(
            f"encoder {spec.name!r}: {source} is a {model.config.model_type!r} model; "
            "the hf backend takes CLIP or SigLIP models"
        )
    tokenizer = load(transformers.AutoTokenizer)
    vision = model.config.vision_config
    siglip = model.config.model_type == "siglip"
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(
            source, cache_dir=cache_dir, local_files_only=True
        )
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except OSError:
        log.warning(
            "%s: no image processor config; using the %s defaults",
            source,
            "SigLIP" if siglip else "CLIP",
        )
        mean, std = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) if siglip else (OPENAI_MEAN, OPENAI_STD)
    context = spec.max_text_tokens or int(
        min(tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
    )
    transform = ImageTransform(
        size=int(vision.image_size),
        mean=mean,
        std=std,
        resize_mode="squash" if siglip else "shortest",
    )
    return HfEncoder(spec.name, model.to(device), tokenizer, transform, context, device, dtype)


def widen_stem(visual: torch.nn.Module, channels: int) -> None:
    """Give an open_clip image tower (ModifiedResNet or ViT, first layer `conv1`)
    `channels` input channels: the first 3 keep their weights, the others start at zero,
    so a single-frame model becomes a motion model computing the same function."""
    conv = visual.conv1
    if not isinstance(conv, torch.nn.Conv2d):
        raise ModelError(f"the image tower's first layer is {type(conv).__name__}, not Conv2d")
    if conv.in_channels == channels:
        return
    if channels < conv.in_channels:
        raise ModelError(f"cannot narrow the image tower from {conv.in_channels} to {channels}")
    wider = torch.nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    ).to(conv.weight)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, : conv.in_channels].copy_(conv.weight)
        if conv.bias is not None and wider.bias is not None:
            wider.bias.copy_(conv.bias)
    visual.conv1 = wider


def _build_vtr_checkpoint(
    spec: EncoderSpec, device: torch.device, dtype: torch.dtype
) -> OpenClipEncoder:
    """A `vtr train encoder` checkpoint: open_clip CLIP from its own config and weights."""
    import open_clip

    from engine.encoder_checkpoint import open_clip_state_dict, read_checkpoint

    path = Path(spec.weights).expanduser()
    checkpoint = read_checkpoint(path)
    try:
        config = checkpoint["model_config"]
        image = checkpoint["image"]
        transform = ImageTransform(
            size=int(image["size"]),
            mean=tuple(image["mean"]),
            std=tuple(image["std"]),
            resize_mode=image["resize_mode"],
            interpolation=image["interpolation"],
            motion_gap_s=float(image.get("motion_gap_s", 0.0)),
        )
        model = open_clip.model.CLIP(**config)
        widen_stem(model.visual, transform.channels)
        model.load_state_dict(open_clip_state_dict(checkpoint))
        context = int(config["text_cfg"]["context_length"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"encoder {spec.name!r}: cannot build the model of {path}: {e}") from e
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    return OpenClipEncoder(
        spec.name, model.to(device=device, dtype=dtype), tokenizer, transform, device, dtype
    )


def create_encoder(
    name_or_spec: str | EncoderSpec, device: str = "auto", *, cache_dir: Path | None = None
) -> Encoder:
    """Build the encoder `name_or_spec` (a registered name, a spec string or an EncoderSpec).

    `cache_dir` overrides the Hugging Face cache directory for weights lookups.
    """
    spec = name_or_spec if isinstance(name_or_spec, EncoderSpec) else resolve_encoder(name_or_spec)
    torch_device, dtype = resolve_device(device)
    source = spec.arch or spec.weights
    log.info("building encoder %s (%s %s) on %s", spec.name, spec.backend, source, torch_device)
    if spec.backend == "open_clip":
        return _build_open_clip(spec, torch_device, dtype, cache_dir)
    if spec.backend == "vtr":
        return _build_vtr_checkpoint(spec, torch_device, dtype)
    return _build_hf(spec, torch_device, dtype, cache_dir)


def encode_video_clips(encoder: Encoder, clips: Iterable[Any], batch_size: int = 64) -> np.ndarray:
    """Clips (objects with `.frames` (F, H, W, 3) uint8) -> (T, embed_dim) float32.

    Each clip's frames are embedded (in pairs for a motion encoder), averaged in
    embedding space and re-normalised.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    out: list[np.ndarray] = []
    pending: list[torch.Tensor] = []  # pixels of whole clips waiting for a batch
    counts: list[int] = []  # pixel rows per pending clip

    def flush() -> None:
        pixels = torch.cat(pending)  # (rows, C, S, S)
        embedded = np.concatenate(
            [
                encoder.encode_images(pixels[i : i + batch_size])
                for i in range(0, len(pixels), batch_size)
            ]
        )  # (frames, D)
        start = 0
        for n in counts:
            mean = embedded[start : start + n].mean(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            start += n
        pending.clear()
        counts.clear()

    for clip in clips:
        pending.append(encoder.preprocess(clip.frames))
        counts.append(len(pending[-1]))
        if sum(counts) >= batch_size:
            flush()
    if pending:
        flush()
    if not out:
        return np.zeros((0, encoder.embed_dim), np.float32)
    return np.stack(out).astype(np.float32)
