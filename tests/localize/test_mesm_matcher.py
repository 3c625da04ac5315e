"""Hungarian matcher: hand-computed costs, obvious assignments, optimality vs brute force."""

import itertools
import math

import pytest
import torch

from engine.errors import InputError
from localize.mesm.matcher import (
    HungarianMatcher,
    generalized_temporal_iou,
    span_cxw_to_xx,
    span_xx_to_cxw,
    temporal_iou,
)


def test_span_format_round_trip() -> None:
    xx = torch.tensor([[0.0, 1.0], [0.2, 0.4]])
    cxw = span_xx_to_cxw(xx)
    assert torch.allclose(cxw, torch.tensor([[0.5, 1.0], [0.3, 0.2]]))
    assert torch.allclose(span_cxw_to_xx(cxw), xx)


def test_iou_and_giou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.2], [0.5, 1.0]])
    b = torch.tensor([[0.0, 0.3], [0.0, 1.0]])
    iou, union = temporal_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[2 / 3, 0.2], [0.0, 0.5]]))
    assert torch.allclose(union, torch.tensor([[0.3, 1.0], [0.8, 1.0]]))
    # disjoint [0.5, 1] vs [0, 0.3]: IoU 0, enclosing 1, union 0.8 -> -0.2
    giou = generalized_temporal_iou(a, b)
    assert torch.allclose(giou, torch.tensor([[2 / 3, 0.2], [-0.2, 0.5]]))


def test_giou_rejects_reversed_spans() -> None:
    with pytest.raises(InputError):
        generalized_temporal_iou(torch.tensor([[0.5, 0.1]]), torch.tensor([[0.0, 1.0]]))


def test_cost_matrix_by_hand() -> None:
    # pred (0.5, 0.2) -> [0.4, 0.6]; target (0.6, 0.2) -> [0.5, 0.7]
    # L1 = 0.1; IoU = 0.1 / 0.3; enclosing = union -> GIoU = 1/3; p_fg = 0.5
    cost = HungarianMatcher().cost_matrix(
        torch.zeros(1, 2), torch.tensor([[0.5, 0.2]]), torch.tensor([[0.6, 0.2]])
    )
    assert cost.shape == (1, 1)
    assert math.isclose(float(cost[0, 0]), 10 * 0.1 - 1 / 3 - 4 * 0.5, rel_tol=1e-5)


def test_obvious_assignment() -> None:
    outputs = {
        "pred_logits": torch.zeros(1, 3, 2),
        "pred_spans": torch.tensor([[[0.2, 0.1], [0.5, 0.1], [0.8, 0.1]]]),
    }
    targets = [torch.tensor([[0.75, 0.1], [0.25, 0.1]])]
    [(rows, cols)] = HungarianMatcher()(outputs, targets)
    assert rows.tolist() == [0, 2]
    assert cols.tolist() == [1, 0]
    assert rows.dtype == cols.dtype == torch.int64


def test_class_cost_breaks_a_span_tie() -> None:
    # Two predictions with the same span; the one more confident of foreground wins.
    logits = torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])
    outputs = {"pred_logits": logits, "pred_spans": torch.tensor([[[0.5, 0.2], [0.5, 0.2]]])}
    [(rows, cols)] = HungarianMatcher()(outputs, [torch.tensor([[0.5, 0.2]])])
    assert rows.tolist() == [1] and cols.tolist() == [0]


def test_assignment_is_optimal_against_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    matcher = HungarianMatcher()
    for _ in range(20):
        q, n = 5, 3
        centre = torch.rand(2, q, generator=gen)
        width = torch.rand(2, q, generator=gen) * 0.4 + 0.05
        outputs = {
            "pred_logits": torch.randn(2, q, 2, generator=gen),
            "pred_spans": torch.stack([centre, width], dim=-1),
        }
        targets = [
            torch.stack(
                [torch.rand(n, generator=gen), torch.rand(n, generator=gen) * 0.3 + 0.05], 1
            )
            for _ in range(2)
        ]
        for b, (rows, cols) in enumerate(matcher(outputs, targets)):
            cost = matcher.cost_matrix(
                outputs["pred_logits"][b], outputs["pred_spans"][b], targets[b]
            )
            found = float(cost[rows, cols].sum())
            best = min(
                sum(float(cost[p, j]) for j, p in enumerate(perm))
                for perm in itertools.permutations(range(q), n)
            )
            assert found == pytest.approx(best, abs=1e-5)
            assert sorted(cols.tolist()) == list(range(n))


def test_queries_with_different_window_counts_and_none() -> None:
    outputs = {"pred_logits": torch.zeros(3, 4, 2), "pred_spans": torch.full((3, 4, 2), 0.3)}
    targets = [torch.tensor([[0.3, 0.3]]), torch.rand(4, 2) * 0.5, torch.zeros(0, 2)]
    result = HungarianMatcher()(outputs, targets)
    assert [len(r) for r, _ in result] == [1, 4, 0]


def test_batch_size_mismatch_is_an_error() -> None:
    outputs = {"pred_logits": torch.zeros(2, 4, 2), "pred_spans": torch.full((2, 4, 2), 0.3)}
    with pytest.raises(InputError, match="2 predictions but 1"):
        HungarianMatcher()(outputs, [torch.tensor([[0.3, 0.3]])])
    with pytest.raises(InputError):
        HungarianMatcher(0.0, 0.0, 0.0)
