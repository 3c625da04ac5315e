"""The vtr-synth encoder: a small open_clip CLIP, its level heads, and checkpoint I/O.

The image tower is open_clip's ModifiedResNet (CLIP's RN: conv stem, bottleneck stages,
attention pooling) at 96 px, or a ViT; the text tower open_clip's causal transformer read
by the standard CLIP BPE tokenizer. Training uses a reduced token
table: one row per BPE id the training sentences can contain plus one shared UNK row
(`TokenVocab`); the checkpoint stores these rows and CLIP's id -> row map
(engine/encoder_checkpoint.py), so `engine.encoders.create_encoder` loads it as a plain
open_clip model with the plain tokenizer, and the text tower still gives per-token
`ln_final` features for the localizer.

Level heads map a video's clip embeddings (T, D) (L2-normalised, as the feature store
holds them) to the joint space, one head per level (architecture: vtr's levels,
global / action / entity, in the spirit of multi-level alignment for video-text retrieval):
- global: attention pooling over every clip, plus a zero-initialised residual MLP;
- action: a temporal convolution over a window's clips (order-aware: it can tell a move
  left from a move right), max/mean pooled, added to an attention-pooled window vector;
- entity: attention pooling over a visual state's clips plus a residual MLP.
Every residual branch starts at zero and every attention at uniform weights, so an
untrained head equals mean pooling (the `pooling` level strategy).

A checkpoint (engine/encoder_checkpoint.py) is one self-describing torch file: the
open_clip weights (float16, compact token table) and config, the head config and weights,
tokenizer and image facts, training arguments and metrics. Written atomically.

    heads = heads_from_checkpoint(read_checkpoint(path))
    encoder = load_trained_encoder(path, "cpu")
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from engine.encoder_checkpoint import (
    CLIP_VOCAB_SIZE,
    TOKEN_EMBEDDING,
    open_clip_state_dict,
    read_checkpoint,
    save_checkpoint,
    token_table,
)
from engine.encoder_registry import EncoderSpec
from engine.encoders import Encoder, create_encoder, image_channels, widen_stem
from engine.errors import ModelError

SOT_ID, EOT_ID = 49406, 49407  # CLIP BPE start / end of text
PAD_ID = 0  # CLIP pads with id 0
LEVEL_NAMES = ("global", "action", "entity")
# Concept classifiers read unit vectors times this: a linear head on unit vectors needs
# large weights for confident logits, which Adam only reaches after many steps.
CONCEPT_SCALE = 10.0


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the CLIP model (the open_clip config is derived from these)."""

    image_size: int = 96
    vision: str = "resnet"  # "resnet": open_clip's ModifiedResNet; "vit": VisionTransformer
    vision_width: int = 16  # resnet: stem width (stage widths x4, x8, x16, x32); vit: width
    vision_layers: int = 1  # resnet: blocks per stage (4 stages); vit: transformer layers
    patch_size: int = 8  # vit only
    text_width: int = 128
    text_layers: int = 4
    head_width: int = 32  # attention head width (text; vit)
    context_length: int = 32  # text tokens: SOT + 30 BPE + EOT, MESM's text length
    embed_dim: int = 128  # joint space
    motion_gap_s: float = 0.0  # > 0: the image tower sees each frame with the one this later

    def __post_init__(self) -> None:
        if self.vision not in ("resnet", "vit"):
            raise ModelError(f"vision must be 'resnet' or 'vit', not {self.vision!r}")
        if not 0.0 <= self.motion_gap_s < 2.0:
            raise ModelError(f"motion_gap_s must be in [0, 2) s, not {self.motion_gap_s}")

    def open_clip_config(self, vocab_size: int = CLIP_VOCAB_SIZE) -> dict[str, Any]:
        """The open_clip `CLIP(**config)` arguments (schema of open_clip's model configs)."""
        vision: dict[str, Any] = {"image_size": self.image_size, "width": self.vision_width}
        if self.vision == "resnet":
            vision["layers"] = [self.vision_layers] * 4
        else:
            vision.update(
                layers=self.vision_layers, head_width=self.head_width, patch_size=self.patch_size
            )
        return {
            "embed_dim": self.embed_dim,
            "quick_gelu": False,
            "vision_cfg": vision,
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": vocab_size,
                "width": self.text_width,
                "heads": max(1, self.text_width // self.head_width),
                "layers": self.text_layers,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        known = {f.name for f in fields(cls)} - {"vision", "motion_gap_s"}
        sizes = {k: int(v) for k, v in data.items() if k in known}
        return cls(
            vision=str(data.get("vision", "resnet")),
            motion_gap_s=float(data.get("motion_gap_s", 0.0)),
            **sizes,
        )


class TokenVocab:
    """The CLIP BPE ids the model has rows for; all other ids share one UNK row.

    Rows: 0 = id 0 (padding), 1 = UNK, then the known ids in increasing order, then SOT
    and EOT last, so the EOT row has the largest index and open_clip's argmax pooling
    finds the end of text in reduced ids exactly as in CLIP ids.
    """

    UNK_ROW = 1

    def __init__(self, token_ids: Iterable[int]) -> None:
        ids = sorted({int(t) for t in token_ids} - {PAD_ID, SOT_ID, EOT_ID})
        if any(not 0 < t < CLIP_VOCAB_SIZE for t in ids):
            raise ModelError("token ids must lie in the CLIP vocabulary")
        self.token_ids: tuple[int, ...] = tuple(ids)
        table = torch.full((CLIP_VOCAB_SIZE,), self.UNK_ROW, dtype=torch.long)
        table[PAD_ID] = 0
        for row, token in enumerate(self.token_ids, start=2):
            table[token] = row
        table[SOT_ID] = len(self.token_ids) + 2
        table[EOT_ID] = len(self.token_ids) + 3
        self.table = table  # (49408,) CLIP id -> row

    @property
    def size(self) -> int:
        return len(self.token_ids) + 4

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """CLIP ids (any shape) -> rows of the reduced table."""
        return self.table.to(ids.device)[ids]


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear layer that starts at zero (a residual branch that starts switched off)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _residual_mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), _zero_linear(hidden, dim))


class AttentionPool(nn.Module):
    """Softmax-weighted mean over a masked sequence; uniform weights at initialisation."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), _zero_linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x (N, L, D), mask (N, L) bool with at least one True per row
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))  # (N, L)
        weights = torch.softmax(scores, dim=-1)  # (N, L)
        return (weights.unsqueeze(-1) * x).sum(dim=1)  # (N, D)


@dataclass(frozen=True)
class HeadConfig:
    dim: int = 128  # the encoder's embed_dim (clip feature size)
    hidden: int = 128


class LevelHeads(nn.Module):
    """Clip embeddings -> global / action / entity vectors (L2-normalised, joint space)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        dim, hidden = config.dim, config.hidden
        self.global_pool = AttentionPool(dim, hidden)
        self.global_mlp = _residual_mlp(dim, hidden)
        self.action_pool = AttentionPool(dim, hidden)
        self.action_conv = nn.Sequential(
            nn.Conv1d(dim, hidden, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel_size=3, padding=1),
            nn.GELU(),
        )
        self.action_out = _zero_linear(2 * hidden, dim)
        self.entity_pool = AttentionPool(dim, hidden)
        self.entity_mlp = _residual_mlp(dim, hidden)

    def global_vectors(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, T, D) clips of N videos, mask (N, T) -> (N, D)."""
        pooled = self.global_pool(x, mask)  # (N, D)
        return F.normalize(pooled + self.global_mlp(pooled), dim=-1)

    def action_vectors(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, L, D) clips of N windows, mask (N, L) -> (N, D)."""
        keep = mask.unsqueeze(-1).to(x.dtype)  # (N, L, 1)
        conv1, act1, conv2, act2 = self.action_conv
        h = act1(conv1((x * keep).transpose(1, 2))) * keep.transpose(1, 2)  # (N, H, L)
        h = act2(conv2(h)).transpose(1, 2)  # (N, L, H); padding past a window reads as zeros
        mean = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)  # (N, H)
        peak = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)  # (N, H)
        pooled = self.action_pool(x, mask)  # (N, D)
        return F.normalize(pooled + self.action_out(torch.cat([mean, peak], dim=-1)), dim=-1)

    def action_span_vectors(
        self, clips: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor
    ) -> torch.Tensor:
        """`action_vectors` of many [start, end) spans of one video's clips (T, D) ->
        (N, D), without running the convolutions once per span.

        Inside a span the two convolutions see zeros past its ends, so only its first two
        and last two positions differ from the convolution over the whole video: those
        come from per-position edge variants (spans of 1-3 clips have their own), the
        rest from prefix sums (mean) and a sparse max table (peak). The attention scores
        are computed once per clip; each span's softmax over them gives its pooled vector.
        """
        conv1, act1, conv2, act2 = self.action_conv
        assert isinstance(conv1, nn.Conv1d) and isinstance(conv2, nn.Conv1d)
        assert conv1.bias is not None and conv2.bias is not None

        def taps(conv: nn.Conv1d, v: torch.Tensor) -> list[torch.Tensor]:
            """v (T, C) through each of the kernel's three taps -> 3 x (T, H)."""
            out, width, _ = conv.weight.shape
            stacked = conv.weight.permute(1, 2, 0).reshape(width, 3 * out)  # (C, 3H)
            return list((v @ stacked).view(len(v), 3, out).unbind(1))

        def shift(v: torch.Tensor, by: int) -> torch.Tensor:  # row t = v[t + by], or zeros
            out = torch.zeros_like(v)
            if by > 0:
                out[:-by] = v[by:]
            else:
                out[-by:] = v[:by]
            return out

        a0, a1, a2 = taps(conv1, clips)
        h1 = act1(shift(a0, -1) + a1 + shift(a2, 1) + conv1.bias)  # (T, H), whole video
        h1_first = act1(a1 + shift(a2, 1) + conv1.bias)  # at a span's first clip
        h1_last = act1(shift(a0, -1) + a1 + conv1.bias)  # at a span's last clip
        b0, b1, b2 = taps(conv2, h1)
        f0, f1, _ = taps(conv2, h1_first)
        _, l1, l2 = taps(conv2, h1_last)
        h2 = act2(shift(b0, -1) + b1 + shift(b2, 1) + conv2.bias)  # (T, H), whole video
        bias = conv2.bias
        first = torch.stack(  # by a span's first clip s: its outputs at s and s + 1
            [act2(f1 + shift(b2, 1) + bias), act2(f0 + shift(b1, 1) + shift(b2, 2) + bias)], 1
        )
        last = torch.stack(  # by a span's last clip t: its outputs at t and t - 1
            [act2(shift(b0, -1) + l1 + bias), act2(shift(b0, -2) + shift(b1, -1) + l2 + bias)], 1
        )
        by_length = {  # spans of 1-3 clips, by their first clip: outputs at each position
            1: act2(act1(a1 + conv1.bias) @ conv2.weight[:, :, 1].T + bias)[:, None],
            2: torch.stack([act2(f1 + shift(l2, 1) + bias), act2(f0 + shift(l1, 1) + bias)], 1),
            3: torch.stack(
                [first[:, 0], act2(f0 + shift(b1, 1) + shift(l2, 2) + bias), shift(last[:, 0], 2)],
                1,
            ),
        }
        lengths = ends - starts
        mean = h2.new_empty(len(starts), h2.shape[1])
        peak = torch.empty_like(mean)
        for length, outputs in by_length.items():
            rows = lengths == length
            values = outputs[starts[rows]]  # (n, L, H)
            mean[rows], peak[rows] = values.mean(1), values.amax(1)
        rows = lengths > len(by_length)
        s, e = starts[rows], ends[rows]
        edges = torch.cat([first[s], last[e - 1]], 1)  # (n, 4, H)
        prefix = F.pad(h2.double().cumsum(0), (0, 0, 1, 0))  # (T + 1, H)
        inner = (prefix[e - 2] - prefix[s + 2]).to(h2.dtype)  # (n, H)
        mean[rows] = (inner + edges.sum(1)) / (e - s).to(h2.dtype)[:, None]
        peak[rows] = torch.maximum(edges.amax(1), _range_max(h2, s + 2, e - 2))
        scores = self.action_pool.score(clips).squeeze(-1)  # (T,), once per clip
        pooled = clips.new_empty(len(starts), clips.shape[1])
        for length in torch.unique(lengths).tolist():  # each span's softmax, by length
            rows = torch.nonzero(lengths == length).squeeze(1)
            index = starts[rows, None] + torch.arange(length, device=clips.device)  # (n, L)
            weights = torch.softmax(scores[index], dim=1)
            pooled[rows] = torch.einsum("nl,nld->nd", weights, clips[index])
        return F.normalize(pooled + self.action_out(torch.cat([mean, peak], dim=-1)), dim=-1)

    def entity_vectors(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, L, D) clips of N visual states, mask (N, L) -> (N, D)."""
        pooled = self.entity_pool(x, mask)  # (N, D)
        return F.normalize(pooled + self.entity_mlp(pooled), dim=-1)

    def levels(
        self,
        clips: torch.Tensor,
        windows: Sequence[tuple[int, int]],
        states: Sequence[tuple[int, int]],
    ) -> dict[str, torch.Tensor]:
        """One video's clips (T, D) and its window / state clip ranges -> level vectors."""
        whole = torch.ones(1, len(clips), dtype=torch.bool, device=clips.device)
        x_w, m_w = gather_ranges(clips, windows)
        x_s, m_s = gather_ranges(clips, states)
        return {
            "global": self.global_vectors(clips.unsqueeze(0), whole),  # (1, D)
            "action": self.action_vectors(x_w, m_w),  # (windows, D)
            "entity": self.entity_vectors(x_s, m_s),  # (states, D)
        }


def _range_max(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """values (T, H), rows [lo, hi) per query -> (N, H) maxima (-inf for empty ranges),
    from a sparse table of maxima over power-of-two runs."""
    out = values.new_full((len(lo), values.shape[1]), float("-inf"))
    size = hi - lo
    table, level = values, 0
    while True:
        rows = torch.nonzero(size.clamp_min(1).log2().floor() == level).squeeze(1)
        rows = rows[size[rows] > 0]
        if len(rows):
            width = 1 << level
            out[rows] = torch.maximum(table[lo[rows]], table[hi[rows] - width])
        if 2 << level > len(values):
            return out
        table = torch.maximum(table[: len(table) - (1 << level)], table[1 << level :])
        level += 1


def gather_ranges(
    clips: torch.Tensor, ranges: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """clips (T, D) and [start, end) ranges -> padded (N, Lmax, D) and mask (N, Lmax)."""
    if not ranges:
        raise ModelError("no clip ranges to gather")
    longest = max(end - start for start, end in ranges)
    index = torch.zeros(len(ranges), longest, dtype=torch.long)
    mask = torch.zeros(len(ranges), longest, dtype=torch.bool)
    for i, (start, end) in enumerate(ranges):
        if not 0 <= start < end <= len(clips):
            raise ModelError(f"clip range {start}..{end} outside 0..{len(clips)}")
        index[i, : end - start] = torch.arange(start, end)
        mask[i, : end - start] = True
    index, mask = index.to(clips.device), mask.to(clips.device)
    return clips[index] * mask.unsqueeze(-1).to(clips.dtype), mask  # (N, Lmax, D), (N, Lmax)


def reverse_in_time(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Padded clip ranges (N, L, D) with mask (N, L) -> each range's clips in reverse
    order (padding stays at the end)."""
    lengths = mask.sum(dim=1, keepdim=True)  # (N, 1)
    index = (lengths - 1 - torch.arange(x.shape[1], device=x.device)).clamp_min(0)  # (N, L)
    flipped = x.gather(1, index.unsqueeze(-1).expand_as(x))
    return flipped * mask.unsqueeze(-1).to(x.dtype)


class SynthClip(nn.Module):
    """The training model: CLIP on reduced token rows, level heads, concept classifiers."""

    def __init__(
        self,
        config: EncoderConfig,
        vocab: TokenVocab,
        n_entity_concepts: int,
        n_action_concepts: int,
        head_hidden: int = 128,
        n_geometry: int = 0,
    ) -> None:
        import open_clip

        super().__init__()
        self.config = config
        self.vocab = vocab
        self.clip = open_clip.model.CLIP(**config.open_clip_config(vocab.size))
        widen_stem(self.clip.visual, image_channels(config.motion_gap_s))
        self.heads = LevelHeads(HeadConfig(config.embed_dim, head_hidden))
        self.entity_concepts = nn.Linear(config.embed_dim, n_entity_concepts)
        self.action_concepts = nn.Linear(config.embed_dim, n_action_concepts)
        nn.init.constant_(self.entity_concepts.bias, -2.0)  # rare labels (focal loss prior)
        nn.init.constant_(self.action_concepts.bias, -2.0)
        # pose regression from a clip embedding (training only), zero at the start; made
        # on a forked generator, so the other weights start as they would without it
        with torch.random.fork_rng(devices=[]):
            self.geometry = _zero_linear(config.embed_dim, n_geometry)
        # temperatures of the level alignments (log of the inverse), CLIP's init 1/0.07
        self.level_logit_scale = nn.Parameter(torch.full((3,), math.log(1.0 / 0.07)))

    def entity_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised image or sentence embeddings -> (N, entity concepts)."""
        return self.entity_concepts(CONCEPT_SCALE * x)

    def action_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised window or sentence embeddings -> (N, action concepts)."""
        return self.action_concepts(CONCEPT_SCALE * x)

    def geometry_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised image embeddings -> (N, geometry targets)."""
        return self.geometry(CONCEPT_SCALE * x)

    def set_concept_priors(self, entity: torch.Tensor, action: torch.Tensor) -> None:
        """Start the concept classifiers at the labels' base rates (focal loss prior init),
        so the towers are not pushed to encode the base rate (collapse) to lower the loss."""
        with torch.no_grad():
            for head, rate in ((self.entity_concepts, entity), (self.action_concepts, action)):
                p = rate.clamp(0.005, 0.995).to(head.bias)
                head.bias.copy_(torch.log(p / (1.0 - p)))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalised pixels -> (N, D) L2-normalised."""
        return F.normalize(self.clip.encode_image(pixels), dim=-1)

    def encode_text(self, clip_ids: torch.Tensor) -> torch.Tensor:
        """(B, context) CLIP token ids -> (B, D) L2-normalised sentence embeddings."""
        return F.normalize(self.clip.encode_text(self.vocab.rows(clip_ids)), dim=-1)

    def clip_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().clamp(max=100.0)

    def level_scale(self, level: str) -> torch.Tensor:
        return self.level_logit_scale[LEVEL_NAMES.index(level)].exp().clamp(max=100.0)

    def export_clip_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The open_clip weights (float16, CPU) without the token embedding, and the
        compact token table (`engine.encoder_checkpoint.token_table`)."""
        state = {k: v.detach().cpu() for k, v in self.clip.state_dict().items()}
        table = token_table(state.pop(TOKEN_EMBEDDING), self.vocab.table)
        weights = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}
        return weights, table

    def load_exported_clip_state(self, checkpoint: dict[str, Any]) -> None:
        """Load exported weights back (e.g. to train on float16-rounded weights); the
        checkpoint's token rows must be this model's `vocab` rows."""
        state = open_clip_state_dict(checkpoint)
        rows = checkpoint["token_table"]["rows"]
        if not torch.equal(checkpoint["token_table"]["row_of_id"].long(), self.vocab.table):
            raise ModelError("the checkpoint's token table does not match the model's vocabulary")
        state[TOKEN_EMBEDDING] = rows.float()
        self.clip.load_state_dict(state)


# --- checkpoints ----------------------------------------------------------------------


def heads_from_checkpoint(checkpoint: dict[str, Any]) -> LevelHeads:
    """The level heads stored in a checkpoint, in eval mode, float32, on the CPU."""
    try:
        stored = checkpoint["level_heads"]
        heads = LevelHeads(HeadConfig(**stored["config"]))
        heads.load_state_dict({k: v.float() for k, v in stored["state_dict"].items()})
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"the checkpoint's level heads cannot be loaded: {e}") from e
    return heads.eval()


def load_trained_encoder(path: Path, device: str = "auto") -> Encoder:
    """An `Encoder` for any checkpoint of `vtr train encoder`."""
    read_checkpoint(path)  # a clear error for a file that is not one
    resolved = str(Path(path).resolve())
    return create_encoder(EncoderSpec(f"vtr:{resolved}", "vtr", "", resolved, 0), device)


def config_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain data (for checkpoints)."""
    data: dict[str, Any] = asdict(config)
    return data


def record_metrics(path: Path, name: str, metrics: dict[str, Any]) -> None:
    """Store `metrics` under `metrics[name]` in the checkpoint at `path` (atomic rewrite)."""
    checkpoint = read_checkpoint(path)
    checkpoint.setdefault("metrics", {})[name] = metrics
    save_checkpoint(path, checkpoint)


def model_from_checkpoint(checkpoint: dict[str, Any], n_geometry: int = 0) -> SynthClip:
    """The training model back from a checkpoint (float16-rounded CLIP weights), CPU.
    A checkpoint without a geometry head gets a fresh one with `n_geometry` outputs."""
    try:
        config = EncoderConfig.from_dict(checkpoint["encoder_config"])
        vocab = TokenVocab(checkpoint["tokenizer"]["trained_token_ids"])
        concepts = checkpoint["concept_heads"]
        heads = checkpoint["level_heads"]
        model = SynthClip(
            config,
            vocab,
            int(concepts["entity"]["weight"].shape[0]),
            int(concepts["action"]["weight"].shape[0]),
            int(heads["config"]["hidden"]),
            int(concepts["geometry"]["weight"].shape[0]) if "geometry" in concepts else n_geometry,
        )
        model.load_exported_clip_state(checkpoint)
        model.heads.load_state_dict(heads["state_dict"])
        model.entity_concepts.load_state_dict(concepts["entity"])
        model.action_concepts.load_state_dict(concepts["action"])
        if "geometry" in concepts:
            model.geometry.load_state_dict(concepts["geometry"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"the checkpoint cannot rebuild the training model: {e}") from e
    return model
