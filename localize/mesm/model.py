"""The MESM moment localizer, weight-compatible with the official implementation.

Paper: Liu et al., "Towards Balanced Alignment: Modal-Enhanced Semantic Modeling for
Video Moment Retrieval" (AAAI 2024, arXiv 2312.12155); official code github lntzm/MESM
(`model/model.py`). An official checkpoint's `model` state_dict without `text_encoder.*`
loads into `MesmModel` with `strict=True` and gives the same outputs (see
tests/localize/test_mesm_model.py, golden test). The text encoder is not part of this
module: callers pass CLIP token features.

Data flow (hidden width d = 256):
  words (B, Lw, 512) -> input_txt_proj -> projed_words (B, Lw, d)
  video (B, Lv, Dv)  -> input_vid_proj -> projed_video (B, Lv, d); sine positions
  FW-MESM  enhance_encoder: video attends to words          -> enhanced_video
  SS-MESM  ss_reconstructor: the learnable `masked_sent_token` attends to the
           projected video (of the row, or of the whole group for QVHighlights);
           L2-normalised -> recon_feat (B, d), prepended to the words
  aligner  t2v_encoder: enhanced_video attends to [recon_feat; words]
  DETR     encoder over [global token; video], DAB decoder with `num_queries` anchors
  heads    class_embed, span_embed (+ inverse_sigmoid(anchor)), saliency

Official batch masks: the official T2V layers pass a padding mask built with
`repeat(nheads, 1, 1)` to `nn.MultiheadAttention`, which reads it batch-major, so with
padding in the batch some heads of a row see another row's mask (see
`layers.official_batch_mask`). `forward(official_masks=True)` (the default) reproduces
that, which the golden test needs; `official_masks=False` gives batch-independent
outputs, equal to the official ones computed one video group at a time, and is what
`localize` computes.

SS-MESM compatibility note: the reconstructor's T2V layers have no self-attention, so in
the official code the other sentences of the group (its context slots) cannot influence
the masked slot's output: `recon_feat` depends on the video only. We reproduce that and
compute only the masked slot; the sentence features are therefore not an input.

`MesmModel.forward(...)` returns a dict (B rows; Q = num_queries; Lv, Lw padded lengths):
  pred_logits          (B, Q, 2)    class logits, index 0 = foreground
  pred_spans           (B, Q, 2)    sigmoid (centre, width), fractions of the video
  saliency_scores      (B, Lv)      per-clip saliency (padding clips hold garbage)
  neg_saliency_scores  (B, Lv)      saliency under another group's sentence; present
                                    only when the negative pass ran (needs >= 2 groups)
  neg_index            (B,) int64   the row whose sentence each row got (with the above)
  aux_outputs          list of {pred_logits, pred_spans} for decoder layers but the last
  video_mask           (B, Lv) bool True = valid clip
  words_mask           (B, Lw) bool True = valid token
  projed_video_feat    (B, Lv, d)   input_vid_proj(video)               (rec_ss loss)
  enhanced_video_feat  (B, Lv, d)   FW-MESM output
  projed_words_feat    (B, Lw, d)   input_txt_proj(words)
  recon_feat           (B, d)       SS-MESM reconstruction, L2-normalised
  projed_recon_feat    (B, d)       output_sent_proj(recon_feat)
  expanded_words_feat  (B, 1+Lw, d) [recon_feat; projed_words]        (rec_ss loss)
  expanded_words_mask  (B, 1+Lw) bool
and, when the FW-MESM reconstruction ran (training, `clip_mask` given):
  recfw_words_logit    (B, Lw, vocab_size+3)  word classifier logits (rec_fw loss)
  recfw_masked         (B, Lw) bool            which tokens were masked

Inference without the training-only work: `encode_text`, `encode_videos` (cacheable per
video: projection, positions, recon_feat) and `localize` (one text vs many videos).
"""

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from engine.errors import InputError
from localize.mesm.config import MesmConfig
from localize.mesm.layers import (
    MLP,
    Linear,
    LinearLayer,
    MomentTransformer,
    T2VBlock,
    T2VEncoder,
    T2VLayer,
    TrainablePositionalEncoding,
    inverse_sigmoid,
    official_batch_mask,
    video_position_embedding,
)

FOREGROUND = 0  # index of the foreground class in `pred_logits`


class SegmentSentenceReconstructor(nn.Module):
    """SS-MESM: the masked sentence slot attends to the video (`ss_reconstructor.*`)."""

    def __init__(self, config: MesmConfig):
        super().__init__()
        d = config.hidden_dim
        self.masked_sent_token = nn.Parameter(torch.zeros(d))
        self.recon_trans = T2VEncoder(
            T2VLayer(d, config.nheads, config.dim_feedforward, config.dropout),
            config.recon_layers,
        )
        self.output_sent_proj = nn.Sequential(
            LinearLayer(d, d, config.input_dropout, relu=True),
            LinearLayer(d, d, config.input_dropout, relu=False),
        )

    def forward(
        self, projed_video: Tensor, video_pad: Tensor | None, extra_mask: Tensor | None = None
    ) -> Tensor:
        """(N, L, d) projected video, (N, L) padding -> recon_feat (N, d), L2-normalised.

        Only the masked slot is computed (see the module doc); no video positions are
        used, as in the official code. `extra_mask` (N, heads, 1, L): official batch mask.
        """
        n = projed_video.shape[0]
        query = self.masked_sent_token[None, None].expand(n, 1, -1)  # (N, 1, d)
        out = self.recon_trans(query, None, projed_video, None, video_pad, extra_mask)
        return nnf.normalize(out[:, 0], dim=-1)  # (N, d)


@dataclass(frozen=True)
class TextState:
    """A query's projected words, ready for `MesmModel.localize` (batch 1 or B)."""

    projed_words: Tensor  # (Bt, Lw, d)
    words_pad: Tensor | None  # (Bt, Lw) bool, True = padding; None = no padding


@dataclass(frozen=True)
class VideoState:
    """Query-independent work on a batch of videos; cache and concatenate freely."""

    projed_video: Tensor  # (N, Lv, d)
    position: Tensor  # (N, Lv, d)
    recon_feat: Tensor  # (N, d)
    video_mask: Tensor  # (N, Lv) bool, True = valid


def _group_index(group_sizes: Tensor | None, batch: int, device: torch.device) -> Tensor:
    """(B,) group id of each row; rows of one group are consecutive."""
    if group_sizes is None:
        return torch.arange(batch, device=device)
    sizes = group_sizes.to(device=device, dtype=torch.long)
    if sizes.ndim != 1 or bool((sizes < 1).any()) or int(sizes.sum()) != batch:
        raise InputError(
            f"group_sizes {sizes.tolist()} must be positive and sum to the batch size {batch}"
        )
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)


def sample_negative_rows(group_of_row: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """(B,) for each row a uniformly drawn row of another group; needs >= 2 groups."""
    b = group_of_row.shape[0]
    other = group_of_row[None, :] != group_of_row[:, None]  # (B, B)
    counts = other.sum(1)  # (B,)
    if bool((counts == 0).any()):
        raise InputError("negative sampling needs at least two video groups in the batch")
    draw = torch.rand(b, generator=generator, device="cpu").to(group_of_row.device)  # (B,)
    pick = (draw * counts).long().clamp(max=counts - 1)  # (B,) rank among the other rows
    ranks = other.long().cumsum(1) - 1  # (B, B) rank of each candidate
    return ((ranks == pick[:, None]) & other).float().argmax(1)  # (B,)


class MesmModel(nn.Module):
    """MESM (FW-MESM + SS-MESM + T2V aligner + DAB-DETR decoder) on precomputed features."""

    def __init__(self, config: MesmConfig):
        super().__init__()
        self.config = config
        c = config
        d = c.hidden_dim
        # Registration order follows the official state_dict.
        self.global_rep_token = nn.Parameter(torch.randn(d))
        self.global_rep_pos = nn.Parameter(torch.randn(d))
        self.masked_token = nn.Parameter(torch.zeros(c.t_feat_dim))
        self.unknown_token = nn.Parameter(torch.zeros(c.t_feat_dim))
        t2v_args = (d, c.nheads, c.dim_feedforward, c.dropout)
        self.enhance_encoder = T2VBlock(*t2v_args, c.enhance_layers)  # FW-MESM
        self.t2v_encoder = T2VBlock(*t2v_args, c.t2v_layers)  # aligner
        self.transformer = MomentTransformer(*t2v_args, c.enc_layers, c.dec_layers)
        self.txt_position_embed = TrainablePositionalEncoding(c.max_q_l + 1, d, c.dropout)
        self.span_embed = MLP(d, d, 2, 3)
        self.class_embed = Linear(d, 2)
        self.query_embed = nn.Embedding(c.num_queries, 2)
        self.input_txt_proj = nn.Sequential(
            LinearLayer(c.t_feat_dim, d, c.input_dropout, relu=True),
            LinearLayer(d, d, c.input_dropout, relu=False),
        )
        self.input_vid_proj = nn.Sequential(
            LinearLayer(c.v_feat_dim, d, c.input_dropout, relu=True),
            LinearLayer(d, d, c.input_dropout, relu=False),
        )
        self.saliency_proj1 = Linear(d, d)
        self.saliency_proj2 = Linear(d, d)
        self.output_txt_proj = nn.Sequential(
            LinearLayer(d, d, c.input_dropout, relu=True),
            Linear(d, c.num_word_classes),
        )
        self.ss_reconstructor = SegmentSentenceReconstructor(c)

    # ------------------------------------------------------------------ inference parts

    def encode_text(self, words_feat: Tensor, words_mask: Tensor | None = None) -> TextState:
        """(Bt, Lw, t_feat_dim) L2-normalised tokens, (Bt, Lw) valid mask -> TextState."""
        if words_feat.ndim != 3 or words_feat.shape[-1] != self.config.t_feat_dim:
            raise InputError(
                f"words_feat must be (batch, tokens, {self.config.t_feat_dim}), "
                f"got {tuple(words_feat.shape)}"
            )
        projed = self.input_txt_proj(words_feat)  # (Bt, Lw, d)
        pad = None
        if words_mask is not None:
            if bool((words_mask.sum(1) == 0).any()):
                raise InputError("every text needs at least one valid token")
            pad = None if bool(words_mask.all()) else ~words_mask
        return TextState(projed, pad)

    def encode_videos(self, video_feat: Tensor, video_mask: Tensor) -> VideoState:
        """(N, Lv, v_feat_dim) clip rows, (N, Lv) valid mask -> VideoState (per-row SS)."""
        self._check_video(video_feat, video_mask)
        projed = self.input_vid_proj(video_feat)  # (N, Lv, d)
        position = video_position_embedding(video_mask, self.config.hidden_dim).to(projed.dtype)
        pad = None if bool(video_mask.all()) else ~video_mask
        recon = self.ss_reconstructor(projed, pad)  # (N, d)
        return VideoState(projed, position, recon, video_mask)

    def localize(self, text: TextState, video: VideoState) -> dict[str, Tensor]:
        """One text (batch 1, shared) or one text per video vs N videos, eval outputs only.

        Returns pred_logits (N, Q, 2), pred_spans (N, Q, 2), saliency_scores (N, Lv).
        """
        n = video.projed_video.shape[0]
        if text.projed_words.shape[0] not in (1, n):
            raise InputError(f"text batch {text.projed_words.shape[0]} does not match {n} videos")
        video_pad = None if bool(video.video_mask.all()) else ~video.video_mask
        enhanced = self._enhance(video.projed_video, video.position, text)
        aligned = self._align(enhanced, video.position, video.recon_feat, text)
        memory, memory_global = self.transformer.encode(
            aligned, video_pad, video.position, self.global_rep_token, self.global_rep_pos
        )
        hs, refs = self.transformer.decoder(
            memory, video_pad, video.position, self.query_embed.weight, all_layers=False
        )
        logits, spans = self._heads(hs, refs)
        return {
            "pred_logits": logits[-1],
            "pred_spans": spans[-1],
            "saliency_scores": self._saliency(memory, memory_global),
        }

    # ------------------------------------------------------------------ shared pieces

    def _check_video(self, video_feat: Tensor, video_mask: Tensor) -> None:
        if video_feat.ndim != 3 or video_feat.shape[-1] != self.config.v_feat_dim:
            raise InputError(
                f"video_feat must be (batch, clips, {self.config.v_feat_dim}), "
                f"got {tuple(video_feat.shape)}"
            )
        if video_mask.shape != video_feat.shape[:2]:
            raise InputError(
                f"video_mask {tuple(video_mask.shape)} does not match video_feat "
                f"{tuple(video_feat.shape)}"
            )
        if bool((video_mask.sum(1) == 0).any()):
            raise InputError("every video needs at least one valid clip")

    def _enhance(
        self,
        projed_video: Tensor,
        position: Tensor,
        text: TextState,
        extra_mask: Tensor | None = None,
    ) -> Tensor:
        """FW-MESM: clips attend to the words (text positions are zeros: not added)."""
        return self.enhance_encoder(
            projed_video, position, text.projed_words, None, text.words_pad, extra_mask
        )

    def _align(
        self,
        enhanced: Tensor,
        position: Tensor,
        recon_feat: Tensor,
        text: TextState,
        extra_mask: Tensor | None = None,
    ) -> Tensor:
        """Aligner: clips attend to [recon_feat; words]; word keys/values projected once."""
        n = enhanced.shape[0]
        words = text.projed_words  # (Bt, Lw, d)
        pad = text.words_pad
        if pad is not None:
            pad = torch.cat([pad.new_zeros(pad.shape[0], 1), pad], dim=1)  # (Bt, 1+Lw)
            pad = pad.expand(n, -1)
        x = enhanced
        for module in self.t2v_encoder.t2v_encoder.layers:
            layer = cast(T2VLayer, module)
            k_w, v_w = layer.source_kv(words, None)  # (Bt, Lw, d) each
            k_r, v_r = layer.source_kv(recon_feat[:, None], None)  # (N, 1, d) each
            k = torch.cat([k_r, k_w.expand(n, -1, -1)], dim=1)  # (N, 1+Lw, d)
            v = torch.cat([v_r, v_w.expand(n, -1, -1)], dim=1)  # (N, 1+Lw, d)
            x = layer.forward_kv(x, position, k, v, pad, extra_mask)
        return x

    def _heads(self, hs: Tensor, refs: Tensor) -> tuple[Tensor, Tensor]:
        """hs (layers, N, Q, d), refs (layers, N, Q, 2) -> logits, sigmoid spans."""
        logits = self.class_embed(hs)  # (layers, N, Q, 2)
        spans = (self.span_embed(hs) + inverse_sigmoid(refs)).sigmoid()  # (layers, N, Q, 2)
        return logits, spans

    def _saliency(self, memory: Tensor, memory_global: Tensor) -> Tensor:
        """(N, Lv, d), (N, d) -> (N, Lv): <proj1(clip), proj2(global)> / sqrt(d)."""
        local = self.saliency_proj1(memory)  # (N, Lv, d)
        glob = self.saliency_proj2(memory_global)  # (N, d)
        return (local * glob[:, None]).sum(-1) / (self.config.hidden_dim**0.5)

    def _recon(
        self,
        video_feat: Tensor,
        video_mask: Tensor,
        projed_video: Tensor,
        group_of_row: Tensor,
        official_masks: bool,
    ) -> Tensor:
        """SS-MESM recon_feat (B, d) for every row, as the official forward computes it.

        Video context: the row's own video ("row"), or all valid clips of the videos of
        the row's group concatenated ("group", the official QVHighlights path).
        """
        b = video_feat.shape[0]
        device = video_feat.device
        if self.config.ss_video == "row":
            context, context_mask = projed_video, video_mask  # (B, Lv, d), (B, Lv)
            row_of_context = torch.arange(b, device=device)
        else:
            num_groups = int(group_of_row.max()) + 1
            lengths = video_mask.sum(1)  # (B,)
            group_len = torch.zeros(num_groups, dtype=torch.long, device=device)
            group_len.index_add_(0, group_of_row, lengths)
            longest = int(group_len.max())
            batched = video_feat.new_zeros(num_groups, longest, video_feat.shape[-1])
            context_mask = torch.arange(longest, device=device)[None] < group_len[:, None]
            batched[context_mask] = video_feat[video_mask]  # clips in row order, per group
            context = self.input_vid_proj(batched)  # (G, Lg, d)
            row_of_context = group_of_row
        if not official_masks:
            recon = self.ss_reconstructor(context, ~context_mask)  # (G or B, d)
            return recon if self.config.ss_video == "row" else recon[group_of_row]
        # Official layout: one row per query, its group's sentences as slots, its own slot
        # masked; the batch mask quirk makes the result depend on the slot's position.
        context, context_mask = context[row_of_context], context_mask[row_of_context]
        sizes = torch.bincount(group_of_row)  # (G,)
        starts = torch.cumsum(sizes, 0) - sizes  # (G,)
        slot = torch.arange(b, device=device) - starts[group_of_row]  # (B,)
        slot_pad = (
            torch.arange(int(sizes.max()), device=device)[None] >= sizes[group_of_row][:, None]
        )  # (B, maxG)
        extra = official_batch_mask(
            slot_pad, ~context_mask, self.config.nheads, target_index=slot[:, None]
        )  # (B, heads, 1, Lg)
        return self.ss_reconstructor(context, ~context_mask, extra)

    # ------------------------------------------------------------------ full forward

    def forward(
        self,
        video_feat: Tensor,
        video_mask: Tensor,
        words_feat: Tensor,
        words_mask: Tensor,
        group_sizes: Tensor | None = None,
        *,
        with_negative: bool = True,
        neg_index: Tensor | None = None,
        clip_mask: Tensor | None = None,
        unknown_mask: Tensor | None = None,
        words_weight: Tensor | None = None,
        masked_words: Tensor | None = None,
        generator: torch.Generator | None = None,
        official_masks: bool = True,
    ) -> dict[str, Any]:
        """The official forward (training and evaluation), outputs as in the module doc.

        video_feat (B, Lv, v_feat_dim) with TEF dims; video_mask (B, Lv) bool;
        words_feat (B, Lw, t_feat_dim) L2-normalised CLIP tokens, zero padding;
        words_mask (B, Lw) bool; group_sizes (G,) rows per video group, consecutive (the
        official `num_clips`; None = every row its own group). Negative pass: when
        `with_negative` and there are >= 2 groups; `neg_index` (B,) fixes its rows,
        else they are sampled with `generator`. FW-MESM reconstruction: in training mode
        when `clip_mask` (B, Lv) bool (ground-truth clips) is given; `unknown_mask`
        (B, Lw) marks tokens outside the vocabulary, `words_weight` (B, Lw) the masking
        weights (2 content words, 1 others, 0 SOT/EOT/padding); `masked_words` (B, Lw)
        bool fixes which tokens are masked instead of sampling them.

        `official_masks=True` reproduces the official T2V layers' batch-mixing attention
        mask (see `layers.official_batch_mask`): outputs then equal the official ones for
        the same batch. False gives batch-independent outputs, equal to the official
        ones computed one video group at a time (what `localize` computes).
        """
        self._check_video(video_feat, video_mask)
        b = video_feat.shape[0]
        if words_feat.shape[0] != b or words_mask.shape != words_feat.shape[:2]:
            raise InputError(
                f"words_feat {tuple(words_feat.shape)} / words_mask {tuple(words_mask.shape)} "
                f"do not match a batch of {b} videos"
            )
        device = video_feat.device
        h = self.config.nheads
        group_of_row = _group_index(group_sizes, b, device)  # (B,)
        num_groups = int(group_of_row.max()) + 1

        text = self.encode_text(words_feat, words_mask)
        projed_words = text.projed_words  # (B, Lw, d)
        projed_video = self.input_vid_proj(video_feat)  # (B, Lv, d)
        position = video_position_embedding(video_mask, self.config.hidden_dim)  # (B, Lv, d)
        video_pad = ~video_mask  # (B, Lv)
        recon = self._recon(video_feat, video_mask, projed_video, group_of_row, official_masks)
        projed_recon = self.ss_reconstructor.output_sent_proj(recon)  # (B, d)
        expanded_words = torch.cat([recon[:, None], projed_words], dim=1)  # (B, 1+Lw, d)
        expanded_mask = torch.cat([words_mask.new_ones(b, 1), words_mask], dim=1)  # (B, 1+Lw)

        def masks(words: Tensor, expanded: Tensor) -> tuple[Tensor | None, Tensor | None]:
            if not official_masks:
                return None, None
            return (
                official_batch_mask(video_pad, ~words, h),
                official_batch_mask(video_pad, ~expanded, h),
            )

        enh_mask, al_mask = masks(words_mask, expanded_mask)
        enhanced = self._enhance(projed_video, position, text, enh_mask)  # (B, Lv, d)
        aligned = self._align(enhanced, position, recon, text, al_mask)  # (B, Lv, d)
        memory, memory_global = self.transformer.encode(
            aligned, video_pad, position, self.global_rep_token, self.global_rep_pos
        )
        hs, refs = self.transformer.decoder(memory, video_pad, position, self.query_embed.weight)
        logits, spans = self._heads(hs, refs)

        out: dict[str, Any] = {
            "pred_logits": logits[-1],
            "pred_spans": spans[-1],
            "saliency_scores": self._saliency(memory, memory_global),
            "aux_outputs": [
                {"pred_logits": a, "pred_spans": s}
                for a, s in zip(logits[:-1], spans[:-1], strict=True)
            ],
            "video_mask": video_mask,
            "words_mask": words_mask,
            "projed_video_feat": projed_video,
            "enhanced_video_feat": enhanced,
            "projed_words_feat": projed_words,
            "recon_feat": recon,
            "projed_recon_feat": projed_recon,
            "expanded_words_feat": expanded_words,
            "expanded_words_mask": expanded_mask,
        }

        if with_negative and num_groups >= 2:
            if neg_index is None:
                neg_index = sample_negative_rows(group_of_row, generator)
            neg_index = neg_index.to(device=device, dtype=torch.long)
            neg_words_mask = words_mask[neg_index]  # (B, Lw)
            neg_text = TextState(projed_words[neg_index], ~neg_words_mask)
            neg_enh_mask, neg_al_mask = masks(neg_words_mask, expanded_mask[neg_index])
            neg_enhanced = self._enhance(projed_video, position, neg_text, neg_enh_mask)
            neg_aligned = self._align(
                neg_enhanced, position, recon[neg_index], neg_text, neg_al_mask
            )
            neg_memory, neg_global = self.transformer.encode(
                neg_aligned, video_pad, position, self.global_rep_token, self.global_rep_pos
            )
            out["neg_saliency_scores"] = self._saliency(neg_memory, neg_global)
            out["neg_index"] = neg_index

        if self.training and clip_mask is not None:
            logit, masked = self._reconstruct_words(
                projed_video,
                position,
                projed_words,
                words_mask,
                clip_mask,
                unknown_mask,
                words_weight,
                masked_words,
                generator,
                official_masks,
            )
            out["recfw_words_logit"] = logit
            out["recfw_masked"] = masked
        return out

    # ------------------------------------------------------------------ FW-MESM training

    def _projected_token(self, token: Tensor) -> Tensor:
        return self.input_txt_proj(token[None, None])[0, 0]  # (d,)

    def _reconstruct_words(
        self,
        projed_video: Tensor,
        position: Tensor,
        projed_words: Tensor,
        words_mask: Tensor,
        clip_mask: Tensor,
        unknown_mask: Tensor | None,
        words_weight: Tensor | None,
        masked_words: Tensor | None,
        generator: torch.Generator | None,
        official_masks: bool,
    ) -> tuple[Tensor, Tensor]:
        """Masked words attend to the ground-truth clips -> (B, Lw, V+3) logits, mask."""
        if clip_mask.shape != projed_video.shape[:2]:
            raise InputError(
                f"clip_mask {tuple(clip_mask.shape)} does not match the video batch "
                f"{tuple(projed_video.shape[:2])}"
            )
        selected = clip_mask.sum(1)  # (B,)
        if bool((selected == 0).any()):
            raise InputError("FW-MESM reconstruction needs at least one ground-truth clip per row")
        words = projed_words
        if unknown_mask is not None:
            unk = self._projected_token(self.unknown_token)  # (d,)
            words = torch.where(unknown_mask[..., None].bool(), unk, words)  # (B, Lw, d)
        if masked_words is None:
            masked = mask_words(words_mask, words_weight, generator)  # (B, Lw) bool
        else:
            masked = masked_words.bool() & words_mask  # (B, Lw)
        mask_vec = self._projected_token(self.masked_token)  # (d,)
        words = torch.where(masked[..., None], mask_vec, words)  # (B, Lw, d)

        longest = int(selected.max())
        clips = projed_video.new_zeros(projed_video.shape[0], longest, projed_video.shape[-1])
        clip_pos = position.new_zeros(clips.shape)
        keep = torch.arange(longest, device=clip_mask.device)[None] < selected[:, None]  # (B, Ls)
        clips[keep] = projed_video[clip_mask]
        clip_pos[keep] = position[clip_mask]
        extra = (
            official_batch_mask(~words_mask, ~keep, self.config.nheads) if official_masks else None
        )
        out = self.enhance_encoder(words, None, clips, clip_pos, ~keep, extra)  # (B, Lw, d)
        return self.output_txt_proj(out), masked


def mask_words(
    words_mask: Tensor, words_weight: Tensor | None, generator: torch.Generator | None = None
) -> Tensor:
    """FW-MESM masking: per row max(l // 3, 1) of its l valid tokens, without replacement.

    Sampling weights: `words_weight` (B, Lw) (uniform over valid tokens when None); rows
    with l <= 1 or no positive weight are left unmasked. Returns (B, Lw) bool.
    """
    b, length = words_mask.shape
    masked = torch.zeros(b, length, dtype=torch.bool, device=words_mask.device)
    counts = words_mask.sum(1).tolist()
    weights = words_mask.float() if words_weight is None else words_weight.float()
    for i, valid in enumerate(counts):
        if valid <= 1:
            continue
        w = weights[i, :valid].clamp(min=0).cpu()  # (l,)
        available = int((w > 0).sum())
        k = min(max(valid // 3, 1), available)
        if k == 0:
            continue
        chosen = torch.multinomial(w, k, replacement=False, generator=generator)
        masked[i, chosen.to(masked.device)] = True
    return masked


def build_model(config: MesmConfig, seed: int | None = None) -> MesmModel:
    """A randomly initialised model (seeded when `seed` is given), in eval mode."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MesmModel(config)
    else:
        model = MesmModel(config)
    return model.eval()
