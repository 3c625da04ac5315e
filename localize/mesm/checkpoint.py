"""MESM checkpoints: official ones (github lntzm/MESM) and our own self-describing ones.

Official training saves `{"model": state_dict (no text_encoder.*), "optimizer": ...,
"lr_scheduler": ..., "epoch": int, "opt": argparse.Namespace}`. `load_official` reads
that (or a bare state_dict), drops any `text_encoder.*` keys, takes the architecture from
the tensor shapes and the rest (heads, clip length, max lengths, dataset) from `opt` when
present, else from the matching preset, and loads with `strict=True`; a mismatch raises
`ModelError` naming the missing, unexpected and mis-shaped keys.

Our own checkpoints carry their config (nanoGPT style) and are written atomically
(temporary file, fsync, rename, fsync of the directory):

    save_checkpoint("mesm.pt", model, {"epoch": 12, "val_map": 0.41})
    model, extra = load_checkpoint("mesm.pt")
    model = load_official("qvhighlights_best.ckpt")
    model = load_model(path)          # either format
"""

import argparse
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.errors import ConfigError, ModelError
from localize.mesm.config import CHARADES, QVHIGHLIGHTS, MesmConfig
from localize.mesm.model import MesmModel

log = logging.getLogger(__name__)

FORMAT = "vtr-mesm"
FORMAT_VERSION = 1
_MAX_NAMED = 8  # keys named per category in a mismatch message


def _read(path: str | Path) -> Any:
    """torch.load without arbitrary code execution (argparse.Namespace allowed)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"MESM checkpoint not found: {p}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ModelError(f"cannot read MESM checkpoint {p}: {e}") from e


def _official_state_dict(raw: Any, path: str | Path) -> dict[str, Tensor]:
    state = raw.get("model", raw) if isinstance(raw, Mapping) else None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ModelError(
            f"{path} is not an official MESM checkpoint: expected a state_dict or a dict "
            "with a 'model' state_dict"
        )
    dropped = [k for k in state if k.startswith("text_encoder.")]
    if dropped:
        log.debug("dropping %d text_encoder.* keys from %s", len(dropped), path)
    return {k: v for k, v in state.items() if not k.startswith("text_encoder.")}


def _count_layers(state: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indexes = {int(m[1]) for k in state if (m := pattern.match(k))}
    return max(indexes) + 1 if indexes else 0


def _shape(state: Mapping[str, Tensor], key: str, dim: int = 0) -> int | None:
    tensor = state.get(key)
    return None if tensor is None or tensor.ndim <= dim else int(tensor.shape[dim])


def _opt_values(opt: Any) -> dict[str, Any]:
    """Non-shape config values from the official `opt` namespace (or dict)."""
    data = vars(opt) if isinstance(opt, argparse.Namespace) else dict(opt)
    mapping = {
        "nheads": "nheads",
        "dropout": "dropout",
        "input_dropout": "input_dropout",
        "max_v_l": "max_video_l",
        "clip_seconds": "clip_len",
        "use_tef": "use_tef",
    }
    values = {ours: data[theirs] for ours, theirs in mapping.items() if theirs in data}
    if "dataset_name" in data:
        values["ss_video"] = "group" if data["dataset_name"] == "qvhighlights" else "row"
    if "clip_seconds" in values:
        if values["clip_seconds"] == -1:  # normalised clip positions: no clip length
            values.pop("clip_seconds")
        else:
            values["clip_seconds"] = float(values["clip_seconds"])
    return values


def infer_config(
    state: Mapping[str, Tensor], opt: Any = None, base: MesmConfig | None = None
) -> MesmConfig:
    """The config an official state_dict was trained with.

    Shapes give the architecture; `opt` (the official argparse options) gives heads,
    dropout, clip length, max video length and the SS-MESM video mode; otherwise `base`
    (default: the Charades preset for a 1111-word vocabulary, else QVHighlights).
    """
    shape_values = {
        "hidden_dim": _shape(state, "global_rep_token"),
        "t_feat_dim": _shape(state, "masked_token"),
        "v_feat_dim": _shape(state, "input_vid_proj.0.LayerNorm.weight"),
        "dim_feedforward": _shape(state, "transformer.encoder.layers.0.linear1.weight"),
        "num_queries": _shape(state, "query_embed.weight"),
        "enc_layers": _count_layers(state, "transformer.encoder.layers"),
        "dec_layers": _count_layers(state, "transformer.decoder.layers"),
        "t2v_layers": _count_layers(state, "t2v_encoder.t2v_encoder.layers"),
        "enhance_layers": _count_layers(state, "enhance_encoder.t2v_encoder.layers"),
        "recon_layers": _count_layers(state, "ss_reconstructor.recon_trans.layers"),
    }
    positions = _shape(state, "txt_position_embed.position_embeddings.weight")
    shape_values["max_q_l"] = None if positions is None else positions - 1
    classes = _shape(state, "output_txt_proj.1.weight")
    shape_values["vocab_size"] = None if classes is None else classes - 3
    found = {k: v for k, v in shape_values.items() if v}
    missing = sorted(set(shape_values) - set(found))
    if missing:
        raise ModelError(
            "cannot infer the MESM architecture: the state_dict lacks the keys for "
            + ", ".join(missing)
        )
    if base is None:
        base = CHARADES if found["vocab_size"] == CHARADES.vocab_size else QVHIGHLIGHTS
    values: dict[str, Any] = {**found, **(_opt_values(opt) if opt is not None else {})}
    splits = base.v_feat_splits
    tef = values.get("use_tef", base.use_tef)
    width = found["v_feat_dim"] - (2 if tef else 0)
    if sum(splits) != width:
        splits = ()
    known = {f.name for f in fields(MesmConfig)}
    try:
        return replace(
            base,
            **{k: v for k, v in values.items() if k in known},
            v_feat_splits=splits,
            name=f"{base.name}-official",
        )
    except (TypeError, ValueError, ConfigError) as e:
        raise ModelError(f"cannot build a MESM config from the checkpoint: {e}") from e


def _describe_mismatch(
    model: MesmModel, state: Mapping[str, Tensor], config: MesmConfig, path: str | Path
) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None

    def names(items: list[str]) -> str:
        more = len(items) - _MAX_NAMED
        return ", ".join(items[:_MAX_NAMED]) + (f" (+{more} more)" if more > 0 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {names(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {names(unexpected)}")
    if shapes:
        parts.append(f"wrong shapes: {names(shapes)}")
    return f"checkpoint {path} does not fit the MESM config '{config.name}': " + "; ".join(parts)


def _build(state: Mapping[str, Tensor], config: MesmConfig, path: str | Path) -> MesmModel:
    model = MesmModel(config)
    problem = _describe_mismatch(model, state, config, path)
    if problem:
        raise ModelError(problem)
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(floats, strict=True)
    return model.eval()


def load_official(path: str | Path, config: MesmConfig | None = None) -> MesmModel:
    """A `MesmModel` (eval mode, CPU) from an official MESM checkpoint file."""
    raw = _read(path)
    state = _official_state_dict(raw, path)
    if config is None:
        opt = raw.get("opt") if isinstance(raw, Mapping) else None
        config = infer_config(state, opt)
    model = _build(state, config, path)
    log.info("loaded official MESM checkpoint %s (config %s)", path, config.name)
    return model


def save_checkpoint(
    path: str | Path, model: MesmModel, extra: Mapping[str, Any] | None = None
) -> None:
    """Write `model` (config + weights) and `extra` (plain data, tensors) atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("saved MESM checkpoint %s", target)


def _is_ours(raw: Any) -> bool:
    return isinstance(raw, Mapping) and raw.get("format") == FORMAT


def _from_ours(raw: Mapping[str, Any], path: str | Path) -> tuple[MesmModel, dict[str, Any]]:
    if raw.get("version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: MESM checkpoint version {raw.get('version')!r} is not supported "
            f"(this vtr reads version {FORMAT_VERSION})"
        )
    try:
        config = MesmConfig.from_dict(dict(raw["config"]))
    except (KeyError, TypeError) as e:
        raise ModelError(f"{path}: MESM checkpoint has no valid config: {e}") from e
    return _build(raw["model"], config, path), dict(raw.get("extra", {}))


def load_checkpoint(path: str | Path) -> tuple[MesmModel, dict[str, Any]]:
    """(model in eval mode on CPU, extra) from a checkpoint written by `save_checkpoint`."""
    raw = _read(path)
    if not _is_ours(raw):
        raise ModelError(
            f"{path} is not a vtr MESM checkpoint (no format marker); "
            "use load_official for checkpoints of the official code"
        )
    return _from_ours(raw, path)


def load_model(path: str | Path, config: MesmConfig | None = None) -> MesmModel:
    """A model from either a vtr or an official MESM checkpoint (format detected)."""
    raw = _read(path)
    if _is_ours(raw):
        model, _ = _from_ours(raw, path)
        if config is not None and config != model.config:
            raise ModelError(f"{path} holds a MESM config that differs from the one given")
        return model
    state = _official_state_dict(raw, path)
    if config is None:
        config = infer_config(state, raw.get("opt") if isinstance(raw, Mapping) else None)
    return _build(state, config, path)
