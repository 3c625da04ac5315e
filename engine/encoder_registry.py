"""The encoder table: named image/text encoders as data, one entry each.

An entry names a backend (`open_clip`, `hf` for Hugging Face transformers, or `vtr`
for a checkpoint of `vtr train encoder`), an architecture and a weights source;
`engine.encoders.create_encoder` builds any of them.
Like open_clip's model configs (`list_models`, `add_model_config`), the table is data:
the CLI's choices, the config check and the tests all read it. Besides registered names,
spec strings name an encoder directly:

    open_clip:ARCH:WEIGHTS   WEIGHTS = an open_clip pretrained tag (`openai`), a local
                             checkpoint file, or `random` (seeded random init, for tests
                             and benchmarks); ARCH = an open_clip model config name or an
                             inline config registered here (e.g. `vtr-tiny`)
    hf:MODEL_ID_OR_DIR       a transformers CLIP or SigLIP model id (from the local
                             Hugging Face cache) or a saved model directory
    vtr:PATH                 a checkpoint written by `vtr train encoder` (it carries its
                             own open_clip config, tokenizer and preprocessing facts)

    from engine.encoder_registry import list_encoders, resolve_encoder
    resolve_encoder("clip-vit-b32").arch  # 'ViT-B-32'
"""

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.errors import ModelError

Backend = Literal["open_clip", "hf", "vtr"]
RANDOM_WEIGHTS = "random"


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: what to build and where its weights come from."""

    name: str
    backend: Backend
    arch: str  # open_clip config name / inline config name; hf: model id or directory; vtr: ""
    weights: str = ""  # open_clip: tag, checkpoint path or "random"; vtr: checkpoint; hf: unused
    max_text_tokens: int = 77  # the text tower's context length (tokens); 0: the tokenizer's
    description: str = ""
    seed: int = 0  # random init seed (weights == "random")


# Inline open_clip model configs (the same schema as open_clip's model_configs/*.json).
# `vtr-tiny`: a few hundred KB of transformer on top of CLIP's 49408-token embedding;
# random-init, for tests and CPU benchmarks of the plumbing (its features mean nothing).
_INLINE_CONFIGS: dict[str, dict[str, Any]] = {
    "vtr-tiny": {
        "embed_dim": 64,
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    },
}
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "models"  # checkpoints in the package

_ENCODERS: dict[str, EncoderSpec] = {}
_BUILTIN: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        "clip-vit-b32",
        "open_clip",
        "ViT-B-32",
        "openai",
        description="OpenAI CLIP ViT-B/32 (512-d), the features MESM and Moment-DETR use",
    ),
    EncoderSpec(
        "clip-vit-b16",
        "open_clip",
        "ViT-B-16",
        "openai",
        description="OpenAI CLIP ViT-B/16 (512-d)",
    ),
    EncoderSpec(
        "clip-vit-l14",
        "open_clip",
        "ViT-L-14",
        "openai",
        description="OpenAI CLIP ViT-L/14 (768-d)",
    ),
    EncoderSpec(
        "siglip-b16",
        "hf",
        "google/siglip-base-patch16-224",
        max_text_tokens=64,
        description="Google SigLIP B/16 at 224 px (768-d), via transformers",
    ),
    EncoderSpec(
        "hf-clip-vit-b32",
        "hf",
        "openai/clip-vit-base-patch32",
        description="OpenAI CLIP ViT-B/32 (512-d), via transformers",
    ),
    EncoderSpec(
        "tiny-random",
        "open_clip",
        "vtr-tiny",
        RANDOM_WEIGHTS,
        description="64-d random-init CLIP for tests (32 px images, 2+2 layers)",
    ),
    EncoderSpec(
        "vtr-synth-s",
        "vtr",
        "",
        str(SHIPPED_MODELS_DIR / "vtr-synth-s.pt"),
        max_text_tokens=0,
        description="128-d CLIP trained on the vtr synth world (96 px ResNet, 4-layer text)",
    ),
    EncoderSpec(
        "vtr-synth-s4",
        "vtr",
        "",
        str(SHIPPED_MODELS_DIR / "vtr-synth-s4.pt"),
        max_text_tokens=0,
        description="vtr-synth-s trained on with pose and counterfactual losses and a motion "
        "input (each frame with the frame 0.5 s later)",
    ),
)


def register_encoder(spec: EncoderSpec, *, replace: bool = False) -> None:
    """Add `spec` to the table (`replace=True` to redefine an existing name)."""
    if ":" in spec.name:
        raise ModelError(f"encoder name {spec.name!r} must not contain ':' (spec strings use it)")
    if spec.name in _ENCODERS and not replace:
        raise ModelError(f"encoder {spec.name!r} is already registered")
    if spec.backend not in ("open_clip", "hf", "vtr"):
        raise ModelError(f"encoder {spec.name!r}: unknown backend {spec.backend!r}")
    _ENCODERS[spec.name] = spec


def inline_model_config(name: str) -> dict[str, Any] | None:
    """A copy of the inline model config `name`, or None when `name` is not one."""
    config = _INLINE_CONFIGS.get(name)
    return copy.deepcopy(config) if config is not None else None


def list_encoders() -> list[EncoderSpec]:
    """Every registered encoder, in registration order."""
    return list(_ENCODERS.values())


def resolve_encoder(name_or_spec: str) -> EncoderSpec:
    """A registered name or an `open_clip:` / `hf:` spec string -> its `EncoderSpec`."""
    if name_or_spec in _ENCODERS:
        return _ENCODERS[name_or_spec]
    if name_or_spec.startswith("open_clip:"):
        parts = name_or_spec.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ModelError(
                f"bad encoder spec {name_or_spec!r}: expected open_clip:ARCH:PRETRAINED_OR_PATH"
            )
        config = _INLINE_CONFIGS.get(parts[1])
        context = int(config["text_cfg"].get("context_length", 77)) if config else 77
        return EncoderSpec(name_or_spec, "open_clip", parts[1], parts[2], context)
    if name_or_spec.startswith("hf:"):
        model = name_or_spec[3:]
        if not model:
            raise ModelError(f"bad encoder spec {name_or_spec!r}: expected hf:MODEL_ID_OR_DIR")
        return EncoderSpec(name_or_spec, "hf", model, max_text_tokens=0)
    if name_or_spec.startswith("vtr:"):
        path = name_or_spec[4:]
        if not path:
            raise ModelError(f"bad encoder spec {name_or_spec!r}: expected vtr:CHECKPOINT_PATH")
        return EncoderSpec(name_or_spec, "vtr", "", path, max_text_tokens=0)
    known = ", ".join(_ENCODERS)
    raise ModelError(
        f"unknown encoder {name_or_spec!r}; known: {known} "
        "(or a spec: open_clip:ARCH:PRETRAINED_OR_PATH, hf:MODEL_ID_OR_DIR, vtr:CHECKPOINT)"
    )


for _spec in _BUILTIN:
    register_encoder(_spec)
