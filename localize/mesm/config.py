"""MESM model configuration: one frozen dataclass and the official presets.

Values follow the official configs of MESM (Liu et al., "Towards Balanced Alignment:
Modal-Enhanced Semantic Modeling for Video Moment Retrieval", AAAI 2024; code
github lntzm/MESM, `config/*/C+SF_C.json`). Feature widths are configuration: the
video input width `v_feat_dim` counts the 2 TEF dims appended to each clip row
(CLIP 512 + SlowFast 2304 + 2 = 2818 for the official C+SF features, each block
L2-normalised on its own: `v_feat_splits`; 514 for CLIP only).

    cfg = preset("qvhighlights")
    cfg = clip_only(512)            # our own CLIP-only features, 514-d video input
    cfg = replace(cfg, vocab_size=1111)
"""

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from engine.errors import ConfigError

SsVideo = Literal["group", "row"]

TEF_DIMS = 2  # [t/L, t/L + 1/L] appended to every clip row


@dataclass(frozen=True)
class MesmConfig:
    """Architecture and data-shape settings of one MESM model."""

    v_feat_dim: int = 2818  # video input width per clip, TEF dims included
    t_feat_dim: int = 512  # CLIP text token width (after ln_final)
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.5  # dropout inside the LinearLayer input projections
    enc_layers: int = 2  # self-attention encoder over [global token; video]
    dec_layers: int = 2  # conditional (DAB-style) decoder
    t2v_layers: int = 2  # aligner: video attends to [recon_feat; words]
    enhance_layers: int = 2  # FW-MESM: video attends to words
    recon_layers: int = 4  # SS-MESM reconstructor
    num_queries: int = 10  # moment anchors
    max_v_l: int = 75  # clips per video the model was trained for
    max_q_l: int = 32  # text tokens kept (SOT + words + EOT)
    vocab_size: int = 5000  # FW-MESM vocabulary (top CLIP BPE tokens); head has +3
    clip_seconds: float = 2.0  # seconds per clip row
    use_tef: bool = True  # clip rows end with the 2 TEF dims
    # Widths of the feature blocks concatenated in a clip row (before TEF), each
    # L2-normalised on its own as the official features are; () = one block.
    v_feat_splits: tuple[int, ...] = ()
    # SS-MESM video context: "group" = all clips of the videos of one group (the
    # official QVHighlights path), "row" = each row's own video (Charades, TACoS).
    ss_video: SsVideo = "group"
    label_smoothing: float = 0.1  # FW-MESM reconstruction NLL (used by the losses)
    name: str = "custom"

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, int) or value < 1):
                problems.append(f"{f.name} must be a positive integer, got {value!r}")
        if self.hidden_dim % max(self.nheads, 1) != 0:
            problems.append(
                f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}"
            )
        if self.hidden_dim % 2 != 0:
            problems.append(f"hidden_dim must be even, got {self.hidden_dim}")
        if self.use_tef and self.v_feat_dim <= TEF_DIMS:
            problems.append(f"v_feat_dim {self.v_feat_dim} leaves no room for the TEF dims")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.input_dropout < 1.0:
            problems.append("dropout and input_dropout must be in [0, 1)")
        if self.clip_seconds <= 0:
            problems.append(f"clip_seconds must be > 0, got {self.clip_seconds}")
        if self.v_feat_splits and (
            sum(self.v_feat_splits) != self.clip_feat_dim or min(self.v_feat_splits) < 1
        ):
            problems.append(
                f"v_feat_splits {self.v_feat_splits} must be positive and sum to the clip "
                f"feature width {self.clip_feat_dim}"
            )
        if self.ss_video not in ("group", "row"):
            problems.append(f"ss_video must be 'group' or 'row', got {self.ss_video!r}")
        if problems:
            raise ConfigError("invalid MESM config: " + "; ".join(problems))

    @property
    def num_word_classes(self) -> int:
        """FW-MESM classifier width: vocabulary + <unknown>, <start>, <end>."""
        return self.vocab_size + 3

    @property
    def clip_feat_dim(self) -> int:
        """Width of the clip embedding before the TEF dims are appended."""
        return self.v_feat_dim - TEF_DIMS if self.use_tef else self.v_feat_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MesmConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown MESM config keys: {', '.join(unknown)}")
        values = dict(data)
        if "v_feat_splits" in values:
            values["v_feat_splits"] = tuple(values["v_feat_splits"])
        return cls(**values)


CLIP_B32_DIM = 512
SLOWFAST_DIM = 2304

QVHIGHLIGHTS = MesmConfig(v_feat_splits=(CLIP_B32_DIM, SLOWFAST_DIM), name="qvhighlights")

CHARADES = MesmConfig(
    v_feat_splits=(CLIP_B32_DIM, SLOWFAST_DIM),
    max_v_l=194,
    max_q_l=16,
    vocab_size=1111,
    clip_seconds=1.0,
    ss_video="row",
    name="charades",
)


def clip_only(embed_dim: int = 512, base: MesmConfig = QVHIGHLIGHTS) -> MesmConfig:
    """`base` with CLIP-only clip features of width `embed_dim` (+2 TEF dims)."""
    return replace(
        base, v_feat_dim=embed_dim + TEF_DIMS, v_feat_splits=(), name=f"{base.name}-clip{embed_dim}"
    )


PRESETS: dict[str, MesmConfig] = {
    "qvhighlights": QVHIGHLIGHTS,
    "charades": CHARADES,
    "qvhighlights-clip": clip_only(512, QVHIGHLIGHTS),
    "charades-clip": clip_only(512, CHARADES),
}


def preset(name: str) -> MesmConfig:
    """The named preset; an unknown name lists the valid ones."""
    try:
        return PRESETS[name]
    except KeyError as e:
        raise ConfigError(
            f"unknown MESM preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from e
