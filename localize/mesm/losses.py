"""MESM training losses: spans, labels, saliency, and the two reconstruction losses.

Definitions follow the official criterion (github lntzm/MESM, `model/criterion.py`; the
saliency part comes from QD-DETR) term by term, so a run with the official weights
optimises the same objective:

- `loss_span`: L1 between matched predicted and ground-truth (centre, width), mean over
  matched pairs and both coordinates (weight 10).
- `loss_giou`: 1 - GIoU of matched pairs, mean (weight 1).
- `loss_label`: cross-entropy over all queries' 2 classes, target foreground (index 0)
  for matched predictions and background otherwise, class weights [1, eos_coef=0.1],
  reduced by a plain mean over batch x queries (as the official code does, not a
  weight-normalised mean) (weight 4). The three above repeat on every auxiliary decoder
  layer with their own matching (`loss_span_0`, ...).
- `loss_saliency` (weight 1; Charades 4) = negative-pair loss
  `sum_t -log(1 - sigmoid(neg_score_t))` over valid clips, mean over queries (computed
  as softplus, which stays finite where the official form overflows)
  + rank-contrastive loss (thresholds 1..11 on the saliency label, temperature 0.5,
  positives >= threshold, the negative pass's clips appended as negatives) / rank_coef
  + (QVHighlights, TACoS) triplet hinge `2 * mean(max(0, margin + s_neg - s_pos))`,
  margin 0.2, over the sampled positive / negative clip pairs.
- `loss_rec_fw` (0.5 QVH, else 0.1): label-smoothed (eps 0.1) NLL of the reconstructed
  words over all valid tokens, mean per sentence then over the batch.
- `loss_rec_ss` (0.1): supervised contrastive loss; anchor = mean projected video over
  the ground-truth clips, candidates = mean of the expanded words (reconstructed
  sentence slot + projected words) of every query in the batch, cosine / 0.5; positives
  are queries of the same video whose merged GT moments have GIoU >= 0.9 (the official
  code uses generalised IoU here), the query itself included.

Use: `MesmCriterion(CRITERION_PRESETS["qvhighlights"])(outputs, targets)` ->
`(losses, total)`; `losses` holds the unweighted terms, `total` their weighted sum.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from engine.errors import InputError
from localize.mesm.matcher import (
    FOREGROUND,
    HungarianMatcher,
    generalized_temporal_iou,
    span_cxw_to_xx,
)

BACKGROUND = 1


@dataclass(frozen=True)
class CriterionConfig:
    """Loss weights and loss hyper-parameters (official names in comments)."""

    span: float = 10.0  # loss_span_coef
    giou: float = 1.0  # loss_giou_coef
    label: float = 4.0  # loss_label_coef
    saliency: float = 1.0  # loss_saliency_coef
    rec_fw: float = 0.5  # loss_recfw_coef
    rec_ss: float = 0.1  # loss_recss_coef
    cost_span: float = 10.0  # set_cost_span
    cost_giou: float = 1.0  # set_cost_giou
    cost_class: float = 4.0  # set_cost_class
    eos_coef: float = 0.1  # CE weight of the background class
    rank_coef: float = 12.0  # the rank-contrastive sum is divided by this
    rank_thresholds: int = 11  # thresholds 1..11 on the (summed) saliency label
    rank_tau: float = 0.5
    use_triplet: bool = True
    saliency_margin: float = 0.2
    label_smoothing: float = 0.1  # rec_fw
    iou_gamma: float = 0.9  # rec_ss positive threshold (GIoU)
    recss_tau: float = 0.5
    aux_loss: bool = True
    use_rec_fw: bool = True
    use_rec_ss: bool = True

    def weight_dict(self, dec_layers: int = 2) -> dict[str, float]:
        """Official-style weight table, auxiliary layers included (`loss_span_0`, ...)."""
        weights = {
            "loss_span": self.span,
            "loss_giou": self.giou,
            "loss_label": self.label,
            "loss_saliency": self.saliency,
        }
        if self.aux_loss:
            for i in range(dec_layers - 1):
                weights |= {
                    f"loss_span_{i}": self.span,
                    f"loss_giou_{i}": self.giou,
                    f"loss_label_{i}": self.label,
                }
        if self.use_rec_fw:
            weights["loss_rec_fw"] = self.rec_fw
        if self.use_rec_ss:
            weights["loss_rec_ss"] = self.rec_ss
        return weights


CRITERION_PRESETS: dict[str, CriterionConfig] = {
    "qvhighlights": CriterionConfig(),
    "clip_only": CriterionConfig(),
    "charades": CriterionConfig(saliency=4.0, rec_fw=0.1, use_triplet=False),
    "tacos": CriterionConfig(label=6.0, cost_class=6.0, rec_fw=0.1, rank_coef=1.0),
}


def criterion_preset(name: str) -> CriterionConfig:
    """The official loss settings for `name`; an unknown name lists the known ones."""
    key = name.replace("-", "_")
    if key not in CRITERION_PRESETS:
        raise InputError(
            f"unknown criterion preset '{name}'; known: {', '.join(sorted(CRITERION_PRESETS))}"
        )
    return CRITERION_PRESETS[key]


@dataclass
class MesmTargets:
    """Ground truth of one batch of N queries (G videos), as the losses need it."""

    span_targets: list[torch.Tensor]  # N x (n_i, 2) normalised (centre, width)
    video_mask: torch.Tensor  # (N, L) bool, valid clips
    saliency_label: torch.Tensor  # (N, L) float; QVH: summed annotator scores, else 0/1
    clip_mask: torch.Tensor  # (N, L) bool, ground-truth (relevant) clips
    pos_idx: torch.Tensor  # (N, P) int64 clip indices for the triplet loss
    neg_idx: torch.Tensor  # (N, P) int64
    num_clips: torch.Tensor  # (G,) int64 queries per video, in batch order
    words_label: torch.Tensor | None = None  # (N, Lw) int64 reconstruction targets

    def to(self, device: torch.device | str) -> "MesmTargets":
        return MesmTargets(
            span_targets=[t.to(device) for t in self.span_targets],
            video_mask=self.video_mask.to(device),
            saliency_label=self.saliency_label.to(device),
            clip_mask=self.clip_mask.to(device),
            pos_idx=self.pos_idx.to(device),
            neg_idx=self.neg_idx.to(device),
            num_clips=self.num_clips.to(device),
            words_label=None if self.words_label is None else self.words_label.to(device),
        )


Indices = Sequence[tuple[torch.Tensor, torch.Tensor]]


def span_losses(
    pred_spans: torch.Tensor, span_targets: Sequence[torch.Tensor], indices: Indices
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, 1 - GIoU) over matched pairs. pred_spans: (N, Q, 2) normalised (centre, width)."""
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    src = pred_spans[batch_idx.to(pred_spans.device), src_idx.to(pred_spans.device)]  # (M, 2)
    tgt = torch.cat([t[j.to(t.device)] for t, (_, j) in zip(span_targets, indices, strict=True)])
    tgt = tgt.to(src)  # (M, 2)
    if src.shape[0] == 0:
        zero = pred_spans.sum() * 0.0
        return zero, zero
    loss_l1 = F.l1_loss(src, tgt, reduction="none").mean()
    giou = torch.diag(generalized_temporal_iou(span_cxw_to_xx(src), span_cxw_to_xx(tgt)))  # (M,)
    return loss_l1, (1.0 - giou).mean()


def label_loss(pred_logits: torch.Tensor, indices: Indices, eos_coef: float) -> torch.Tensor:
    """Weighted CE, matched = foreground; plain mean over (N, Q). pred_logits: (N, Q, 2)."""
    target = torch.full(
        pred_logits.shape[:2], BACKGROUND, dtype=torch.int64, device=pred_logits.device
    )  # (N, Q)
    for b, (src, _) in enumerate(indices):
        target[b, src.to(pred_logits.device)] = FOREGROUND
    weight = torch.ones(2, device=pred_logits.device, dtype=pred_logits.dtype)
    weight[BACKGROUND] = eos_coef
    ce = F.cross_entropy(pred_logits.transpose(1, 2), target, weight, reduction="none")  # (N, Q)
    return ce.mean()


def saliency_loss(
    saliency_scores: torch.Tensor,
    neg_saliency_scores: torch.Tensor | None,
    video_mask: torch.Tensor,
    saliency_label: torch.Tensor,
    pos_idx: torch.Tensor,
    neg_idx: torch.Tensor,
    config: CriterionConfig,
) -> torch.Tensor:
    """Negative-pair + rank-contrastive / rank_coef (+ triplet) loss; scores (N, L).

    `neg_saliency_scores` are the scores of the same videos under a sentence of another
    video; without one (a single-video batch) the negative-pair term is 0 and the rank
    contrast runs over the positive pass alone.
    """
    mask = video_mask.float()  # (N, L)
    label = saliency_label.float()  # (N, L)
    scores = saliency_scores
    if neg_saliency_scores is not None:
        # -log(1 - sigmoid(x)) written as softplus(x): equal, but finite for large x
        neg_term = F.softplus(neg_saliency_scores).masked_fill(~video_mask.bool(), 0.0)  # (N, L)
        loss_neg_pair = neg_term.sum(dim=1).mean()
        scores = torch.cat([scores, neg_saliency_scores], dim=1)  # (N, 2L)
        label = torch.cat([label, torch.zeros_like(label)], dim=1)  # (N, 2L)
        mask = mask.repeat(1, 2)  # (N, 2L)
    else:
        loss_neg_pair = saliency_scores.sum() * 0.0
    scores = mask * scores + (1.0 - mask) * -1e3  # padded clips never win

    loss_rank = saliency_scores.sum() * 0.0
    for threshold in range(1, config.rank_thresholds + 1):
        pos_mask = label >= threshold  # (N, 2L)
        if not bool(pos_mask.any()):
            continue
        has_pos = pos_mask.any(dim=1).float()  # (N,)
        logits = scores / config.rank_tau
        logits = logits - logits.max(dim=1, keepdim=True).values  # numerical stability
        log_prob = logits - torch.log(logits.exp().sum(dim=1, keepdim=True) + 1e-6)  # (N, 2L)
        pos = pos_mask.float()
        mean_log_prob_pos = (pos * log_prob * mask).sum(dim=1) / (pos.sum(dim=1) + 1e-6)  # (N,)
        loss_rank = loss_rank + (-mean_log_prob_pos * has_pos).mean()
    loss = loss_rank / config.rank_coef + loss_neg_pair

    if config.use_triplet:
        pos_scores = saliency_scores.gather(1, pos_idx)  # (N, P)
        neg_scores = saliency_scores.gather(1, neg_idx)  # (N, P)
        hinge = torch.clamp(config.saliency_margin + neg_scores - pos_scores, min=0)  # (N, P)
        loss = loss + hinge.sum() / (pos_idx.shape[0] * pos_idx.shape[1]) * 2
    return loss


def rec_fw_loss(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, eps: float = 0.1
) -> torch.Tensor:
    """Label-smoothed NLL over valid tokens, mean per sentence then batch.

    logits: (N, Lw, V); labels: (N, Lw) int64; mask: (N, Lw) bool (valid tokens).
    Smoothing as the official code: (1 - eps) * NLL + eps / V * sum_v -log p_v.
    """
    log_p = logits.float().log_softmax(dim=-1)  # (N, Lw, V)
    nll = -log_p.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)  # (N, Lw)
    smooth = -log_p.sum(dim=-1)  # (N, Lw)
    per_token = (1.0 - eps) * nll + eps / log_p.shape[-1] * smooth  # (N, Lw)
    per_token = per_token.masked_fill(~mask.bool(), 0.0)
    per_sentence = per_token.sum(dim=-1) / mask.float().sum(dim=-1).clamp(min=1.0)  # (N,)
    return per_sentence.mean()


def merged_moments(span_targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per query, the (start, end) hull of its windows: (N, 2), from (centre, width) lists."""
    rows = []
    for spans in span_targets:
        xx = span_cxw_to_xx(spans)  # (n, 2)
        rows.append(torch.stack([xx.min(), xx.max()]))
    return torch.stack(rows)


def rec_ss_loss(
    projed_video_feat: torch.Tensor,
    clip_mask: torch.Tensor,
    expanded_words_feat: torch.Tensor,
    expanded_words_mask: torch.Tensor,
    moments: torch.Tensor,
    num_clips: torch.Tensor,
    gamma: float = 0.9,
    tau: float = 0.5,
) -> torch.Tensor:
    """Supervised contrastive loss between GT-clip video means and expanded-word means.

    projed_video_feat: (N, L, D); clip_mask: (N, L) bool; expanded_words_feat: (N, Lw', D);
    expanded_words_mask: (N, Lw') bool; moments: (N, 2) normalised (start, end) per query;
    num_clips: (G,) queries per video, so that positives stay inside one video.
    """
    n = moments.shape[0]
    pos_mask = torch.zeros(n, n, dtype=torch.bool, device=moments.device)  # (N, N)
    start = 0
    for count in num_clips.tolist():
        block = moments[start : start + count]  # (c, 2)
        pos_mask[start : start + count, start : start + count] = (
            generalized_temporal_iou(block, block) >= gamma
        )
        start += count
    if start != n:
        raise InputError(f"rec_ss: num_clips sums to {start} but the batch has {n} queries")

    cmask = clip_mask.unsqueeze(-1).float()  # (N, L, 1)
    clip_feat = (projed_video_feat * cmask).sum(dim=1) / cmask.sum(dim=1).clamp(min=1.0)  # (N, D)
    wmask = expanded_words_mask.unsqueeze(-1).float()  # (N, Lw', 1)
    words_feat = (expanded_words_feat * wmask).sum(dim=1) / wmask.sum(dim=1)  # (N, D)
    cos_sim = F.normalize(clip_feat, dim=-1) @ F.normalize(words_feat, dim=-1).T / tau  # (N, N)
    logits = cos_sim - cos_sim.max(dim=1, keepdim=True).values
    log_prob = logits - torch.log(logits.exp().sum(dim=1, keepdim=True) + 1e-6)  # (N, N)
    pos = pos_mask.float()
    mean_log_prob_pos = (pos * log_prob).sum(dim=1) / (pos.sum(dim=1) + 1e-6)  # (N,)
    return (-mean_log_prob_pos).mean()


def _require(outputs: Mapping[str, Any], key: str, loss: str) -> Any:
    if key not in outputs or outputs[key] is None:
        raise InputError(f"MESM loss '{loss}' needs model output '{key}', which is missing")
    return outputs[key]


class MesmCriterion(nn.Module):
    """Matches, computes every loss term, and weights them as the official criterion."""

    def __init__(self, config: CriterionConfig, dec_layers: int = 2):
        super().__init__()
        self.config = config
        self.matcher = HungarianMatcher(config.cost_span, config.cost_giou, config.cost_class)
        self.weight_dict = config.weight_dict(dec_layers)

    def forward(
        self, outputs: Mapping[str, Any], targets: MesmTargets, training: bool = True
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        cfg = self.config
        losses: dict[str, torch.Tensor] = {}
        indices = self.matcher(outputs, targets.span_targets)
        losses["loss_span"], losses["loss_giou"] = span_losses(
            outputs["pred_spans"], targets.span_targets, indices
        )
        losses["loss_label"] = label_loss(outputs["pred_logits"], indices, cfg.eos_coef)
        losses["loss_saliency"] = saliency_loss(
            outputs["saliency_scores"],
            outputs.get("neg_saliency_scores"),
            targets.video_mask,
            targets.saliency_label,
            targets.pos_idx,
            targets.neg_idx,
            cfg,
        )
        if cfg.use_rec_fw and training and outputs.get("recfw_words_logit") is not None:
            if targets.words_label is None:
                raise InputError("MESM loss 'rec_fw' needs words_label in the targets")
            losses["loss_rec_fw"] = rec_fw_loss(
                outputs["recfw_words_logit"],
                targets.words_label,
                _require(outputs, "words_mask", "rec_fw"),
                cfg.label_smoothing,
            )
        if cfg.use_rec_ss:
            losses["loss_rec_ss"] = rec_ss_loss(
                _require(outputs, "projed_video_feat", "rec_ss"),
                targets.clip_mask,
                _require(outputs, "expanded_words_feat", "rec_ss"),
                _require(outputs, "expanded_words_mask", "rec_ss"),
                merged_moments(targets.span_targets),
                targets.num_clips,
                cfg.iou_gamma,
                cfg.recss_tau,
            )
        if cfg.aux_loss:
            for i, aux in enumerate(outputs.get("aux_outputs") or []):
                aux_indices = self.matcher(aux, targets.span_targets)
                l1, giou = span_losses(aux["pred_spans"], targets.span_targets, aux_indices)
                losses[f"loss_span_{i}"] = l1
                losses[f"loss_giou_{i}"] = giou
                losses[f"loss_label_{i}"] = label_loss(
                    aux["pred_logits"], aux_indices, cfg.eos_coef
                )
        total = sum(
            (self.weight_dict[k] * v for k, v in losses.items() if k in self.weight_dict),
            start=torch.zeros((), device=outputs["pred_logits"].device),
        )
        return losses, total
