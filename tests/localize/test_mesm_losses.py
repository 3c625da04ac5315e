"""MESM losses against values computed by hand on tiny inputs."""

import math
from typing import Any

import pytest
import torch

from engine.errors import InputError
from localize.mesm.losses import (
    CriterionConfig,
    MesmCriterion,
    MesmTargets,
    criterion_preset,
    label_loss,
    merged_moments,
    rec_fw_loss,
    rec_ss_loss,
    saliency_loss,
    span_losses,
)

ONE = [(torch.tensor([0]), torch.tensor([0]))]


def test_span_losses_by_hand() -> None:
    # matched pred (0.5, 0.2) vs target (0.6, 0.2): L1 mean of [0.1, 0] = 0.05; GIoU = 1/3
    pred = torch.tensor([[[0.5, 0.2], [0.1, 0.1]]])
    l1, giou = span_losses(pred, [torch.tensor([[0.6, 0.2]])], ONE)
    assert float(l1) == pytest.approx(0.05)
    assert float(giou) == pytest.approx(2 / 3)


def test_span_losses_follow_the_matching() -> None:
    pred = torch.tensor([[[0.5, 0.2], [0.6, 0.2]]])
    target = [torch.tensor([[0.6, 0.2]])]
    l1, giou = span_losses(pred, target, [(torch.tensor([1]), torch.tensor([0]))])
    assert float(l1) == pytest.approx(0.0, abs=1e-7)
    assert float(giou) == pytest.approx(0.0, abs=1e-6)


def test_label_loss_by_hand() -> None:
    # query 0 matched (target fg): logits [0, 0] -> ln 2, weight 1
    # query 1 background: p_bg = 3/4 -> -ln(3/4), weight 0.1; plain mean over 2 queries
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    expected = (math.log(2.0) + 0.1 * math.log(4 / 3)) / 2
    assert float(label_loss(logits, ONE, 0.1)) == pytest.approx(expected, rel=1e-6)


def _cfg(**kw: object) -> CriterionConfig:
    return CriterionConfig(**kw)  # type: ignore[arg-type]


def test_saliency_loss_by_hand() -> None:
    scores = torch.tensor([[0.0, 1.0]])
    neg = torch.tensor([[0.0, 0.0]])
    mask = torch.tensor([[True, True]])
    label = torch.tensor([[0.0, 2.0]])
    pos_idx, neg_idx = torch.tensor([[1, 1]]), torch.tensor([[0, 1]])
    # neg pair: 2 clips x -ln(1 - 0.5) = 2 ln 2
    # rank: scores+neg = [0, 1, 0, 0] / 0.5 -> [0, 2, 0, 0]; thresholds 1 and 2 have the
    #   positive clip 1: -log_softmax at it = log(1 + 3 e^-2 + 1e-6) (max-shifted), twice
    # triplet: hinges max(0, 0.2 + 0 - 1) = 0 and max(0, 0.2 + 1 - 1) = 0.2 -> 0.2 / 2 * 2
    rank = 2 * math.log(1 + 3 * math.exp(-2) + 1e-6)
    expected = 2 * math.log(2) + rank / 12 + 0.2
    got = saliency_loss(scores, neg, mask, label, pos_idx, neg_idx, _cfg())
    assert float(got) == pytest.approx(expected, rel=1e-5)
    no_triplet = saliency_loss(scores, neg, mask, label, pos_idx, neg_idx, _cfg(use_triplet=False))
    assert float(no_triplet) == pytest.approx(expected - 0.2, rel=1e-5)


def test_saliency_loss_ignores_padded_clips() -> None:
    scores = torch.tensor([[0.0, 1.0, 50.0]])
    neg = torch.tensor([[0.0, 0.0, 50.0]])
    mask = torch.tensor([[True, True, False]])
    label = torch.tensor([[0.0, 2.0, 0.0]])
    pos_idx, neg_idx = torch.tensor([[1, 1]]), torch.tensor([[0, 1]])
    padded = saliency_loss(scores, neg, mask, label, pos_idx, neg_idx, _cfg())
    trimmed = saliency_loss(
        scores[:, :2], neg[:, :2], mask[:, :2], label[:, :2], pos_idx, neg_idx, _cfg()
    )
    assert float(padded) == pytest.approx(float(trimmed), rel=1e-6)
    # a huge score on a valid clip stays finite (softplus, not log(1 - sigmoid))
    huge = saliency_loss(scores * 0 + 40.0, neg * 0 + 40.0, mask, label, pos_idx, neg_idx, _cfg())
    assert math.isfinite(float(huge))


def test_saliency_loss_without_negative_pass() -> None:
    # single-video batch: no neg term, rank over [0, 2] only: log(1 + e^-2 + 1e-6) x 2
    scores = torch.tensor([[0.0, 1.0]])
    got = saliency_loss(
        scores,
        None,
        torch.tensor([[True, True]]),
        torch.tensor([[0.0, 2.0]]),
        torch.tensor([[1, 1]]),
        torch.tensor([[0, 0]]),
        _cfg(use_triplet=False),
    )
    assert float(got) == pytest.approx(2 * math.log(1 + math.exp(-2) + 1e-6) / 12, rel=1e-5)


def test_saliency_rank_loss_skips_rows_without_positives() -> None:
    # row 1 has no positive clip: it adds 0 but still counts in the batch mean
    scores = torch.tensor([[0.0, 1.0], [3.0, -1.0]])
    label = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    idx = torch.zeros(2, 2, dtype=torch.int64)
    got = saliency_loss(scores, None, mask, label, idx, idx, _cfg(use_triplet=False, rank_coef=1.0))
    assert float(got) == pytest.approx(math.log(1 + math.exp(-2) + 1e-6) / 2, rel=1e-5)


def test_rec_fw_loss_by_hand_mean_per_sentence() -> None:
    v = 2
    logits = torch.tensor(
        [
            [[0.0, 0.0], [math.log(3.0), 0.0], [9.0, -9.0]],  # third token is padding
            [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[0, 1, 1], [1, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    t0 = 0.9 * math.log(2) + 0.1 / v * 2 * math.log(2)  # = ln 2
    t1 = 0.9 * math.log(4) + 0.1 / v * (math.log(4 / 3) + math.log(4))
    expected = ((t0 + t1) / 2 + math.log(2)) / 2  # per sentence, then over the batch
    assert float(rec_fw_loss(logits, labels, mask, 0.1)) == pytest.approx(expected, rel=1e-6)


def test_rec_ss_loss_by_hand() -> None:
    video = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])  # (2, 2, 2)
    clip_mask = torch.tensor([[True, False], [False, True]])
    words = torch.tensor([[[1.0, 0.0], [5.0, 5.0]], [[0.0, 2.0], [0.0, 0.0]]])  # (2, 2, 2)
    words_mask = torch.tensor([[True, False], [True, False]])
    # anchors e1, e2; word means e1, e2 -> cos/0.5 = [[2, 0], [0, 2]]
    lse = math.log(1 + math.exp(-2) + 1e-6)
    disjoint = torch.tensor([[0.0, 0.5], [0.5, 1.0]])  # GIoU 0 -> only self positive
    got = rec_ss_loss(video, clip_mask, words, words_mask, disjoint, torch.tensor([2]))
    assert float(got) == pytest.approx(lse, rel=1e-5)
    same = torch.tensor([[0.2, 0.6], [0.2, 0.6]])  # GIoU 1 -> both positive
    got = rec_ss_loss(video, clip_mask, words, words_mask, same, torch.tensor([2]))
    assert float(got) == pytest.approx((lse + (2 + lse)) / 2, rel=1e-5)
    # the same moments in two different videos are not positives of each other
    got = rec_ss_loss(video, clip_mask, words, words_mask, same, torch.tensor([1, 1]))
    assert float(got) == pytest.approx(lse, rel=1e-5)
    with pytest.raises(InputError):
        rec_ss_loss(video, clip_mask, words, words_mask, same, torch.tensor([1]))


def test_merged_moments_hull() -> None:
    spans = [torch.tensor([[0.2, 0.2], [0.7, 0.2]]), torch.tensor([[0.5, 1.0]])]
    assert torch.allclose(merged_moments(spans), torch.tensor([[0.1, 0.8], [0.0, 1.0]]))


def _outputs(n: int, q: int, length: int, lw: int, vocab: int, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, requires_grad=True)

    return {
        "pred_logits": r(n, q, 2),
        "pred_spans": torch.rand(n, q, 2, generator=g).mul(0.5).add(0.1).requires_grad_(),
        "saliency_scores": r(n, length),
        "neg_saliency_scores": r(n, length),
        "aux_outputs": [
            {
                "pred_logits": r(n, q, 2),
                "pred_spans": torch.rand(n, q, 2, generator=g).mul(0.5).add(0.1),
            }
        ],
        "recfw_words_logit": r(n, lw, vocab),
        "words_mask": torch.ones(n, lw, dtype=torch.bool),
        "projed_video_feat": r(n, length, 8),
        "expanded_words_feat": r(n, lw + 1, 8),
        "expanded_words_mask": torch.ones(n, lw + 1, dtype=torch.bool),
    }


def _targets(n: int, length: int, lw: int, vocab: int) -> MesmTargets:
    label = torch.zeros(n, length)
    label[:, 1:3] = torch.tensor([4.0, 9.0])
    return MesmTargets(
        span_targets=[torch.tensor([[0.3, 0.2]])] * (n - 1)
        + [torch.tensor([[0.3, 0.2], [0.7, 0.1]])],
        video_mask=torch.ones(n, length, dtype=torch.bool),
        saliency_label=label,
        clip_mask=label > 0,
        pos_idx=torch.tensor([[2, 1]] * n),
        neg_idx=torch.tensor([[0, 3]] * n),
        num_clips=torch.tensor([n - 1, 1]),
        words_label=torch.randint(0, vocab, (n, lw), generator=torch.Generator().manual_seed(1)),
    )


def test_criterion_weights_and_aux_terms() -> None:
    n, q, length, lw, vocab = 3, 10, 6, 5, 7
    outputs = _outputs(n, q, length, lw, vocab, seed=0)
    criterion = MesmCriterion(criterion_preset("qvhighlights"))
    losses, total = criterion(outputs, _targets(n, length, lw, vocab))
    expected_keys = {
        "loss_span",
        "loss_giou",
        "loss_label",
        "loss_saliency",
        "loss_rec_fw",
        "loss_rec_ss",
        "loss_span_0",
        "loss_giou_0",
        "loss_label_0",
    }
    assert set(losses) == expected_keys
    w = criterion.weight_dict
    assert w["loss_span"] == 10 and w["loss_giou"] == 1 and w["loss_label"] == 4
    assert w["loss_saliency"] == 1 and w["loss_rec_fw"] == 0.5 and w["loss_rec_ss"] == 0.1
    assert w["loss_span_0"] == 10 and "loss_saliency_0" not in w
    manual = sum(float(losses[k].detach()) * w[k] for k in losses)
    assert float(total.detach()) == pytest.approx(manual, rel=1e-6)
    total.backward()
    assert outputs["pred_logits"].grad is not None
    # evaluation: no rec_fw term
    losses_eval, _ = criterion(outputs, _targets(n, length, lw, vocab), training=False)
    assert "loss_rec_fw" not in losses_eval


def test_presets_carry_the_official_differences() -> None:
    charades = criterion_preset("charades")
    assert charades.saliency == 4 and charades.rec_fw == 0.1 and not charades.use_triplet
    tacos = criterion_preset("tacos")
    assert tacos.cost_class == 6 and tacos.label == 6 and tacos.rank_coef == 1
    assert criterion_preset("clip-only") == criterion_preset("qvhighlights")
    with pytest.raises(InputError, match="known: "):
        criterion_preset("nope")


def test_criterion_reports_missing_outputs() -> None:
    n, length, lw, vocab = 2, 6, 5, 7
    outputs = _outputs(n, 10, length, lw, vocab, seed=0)
    del outputs["projed_video_feat"]
    with pytest.raises(InputError, match="projed_video_feat"):
        MesmCriterion(CriterionConfig())(outputs, _targets(n, length, lw, vocab))
