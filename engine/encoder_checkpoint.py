"""Encoder checkpoints written by `vtr train encoder`: file I/O and the open_clip weights.

One self-describing torch file (format `CHECKPOINT_FORMAT`) holds the open_clip model
config, the CLIP weights in float16, tokenizer and image preprocessing facts, the level
heads and the training record (engine/train_encoder/model.py writes it). The text tower
was trained on a reduced token table (one row per BPE id its sentences used, one shared
UNK row), so the token embedding is stored compactly: `token_table.rows` (R, W) and
`token_table.row_of_id` (49408,) int16, CLIP's id -> row. `open_clip_state_dict` expands
it back to the plain (49408, W) table, so the model is an ordinary open_clip CLIP read by
the ordinary CLIP tokenizer (every id the training never used gets the UNK row).

    checkpoint = read_checkpoint(Path("engine/models/vtr-synth-s.pt"))
    model = open_clip.model.CLIP(**checkpoint["model_config"])
    model.load_state_dict(open_clip_state_dict(checkpoint))
"""

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelError

CHECKPOINT_FORMAT = "vtr-synth-encoder/2"
CLIP_VOCAB_SIZE = 49408
TOKEN_EMBEDDING = "token_embedding.weight"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` with torch.save atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot write checkpoint {path}: {e.strerror or e}") from e
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by `vtr train encoder` (weights only, no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no encoder checkpoint at {path}; train one with `vtr train encoder`")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise ModelError(f"cannot read encoder checkpoint {path}: {e}") from e
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise ModelError(
            f"{path} is not a vtr encoder checkpoint of format {CHECKPOINT_FORMAT}"
            + (f" (it says {found!r})" if found else "")
        )
    return data


def token_table(rows: torch.Tensor, row_of_id: torch.Tensor) -> dict[str, torch.Tensor]:
    """The compact token embedding: rows (R, W) and CLIP id -> row (49408,)."""
    if row_of_id.shape != (CLIP_VOCAB_SIZE,) or int(row_of_id.max()) >= len(rows):
        raise ModelError("the token table must map all 49408 CLIP ids to stored rows")
    if len(rows) > torch.iinfo(torch.int16).max:
        raise ModelError(f"{len(rows)} token rows do not fit the int16 row index")
    return {"rows": rows.detach().cpu().to(torch.float16), "row_of_id": row_of_id.to(torch.int16)}


def open_clip_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's CLIP weights as a plain open_clip state dict (float32, full table)."""
    try:
        state = dict(checkpoint["state_dict"])
        table = checkpoint["token_table"]
        state[TOKEN_EMBEDDING] = table["rows"][table["row_of_id"].long()]  # (49408, W)
    except (KeyError, TypeError, IndexError) as e:
        raise ModelError(f"the checkpoint's CLIP weights are incomplete: {e}") from e
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
