"""Level embeddings: windows, entity states and pooled vectors with their spans."""

import numpy as np
import pytest

from engine.errors import InputError
from index.levels import (
    LevelParams,
    action_span_embedder,
    action_windows,
    entity_states,
    level_strategy,
    mean_spans,
    pooling_levels,
)


def test_action_windows_cover_every_clip() -> None:
    assert action_windows(3, 4, 2) == [(0, 3)]
    assert action_windows(8, 4, 2) == [(0, 4), (2, 6), (4, 8)]
    assert action_windows(9, 4, 2) == [(0, 4), (2, 6), (4, 8), (5, 9)]
    for n in range(1, 40):
        covered = set()
        for start, end in action_windows(n, 4, 2):
            assert 0 <= start < end <= n
            covered.update(range(start, end))
        assert covered == set(range(n))


def _states(pattern: list[int], dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    bases = rng.standard_normal((max(pattern) + 1, dim))
    clips = bases[pattern] + 0.05 * rng.standard_normal((len(pattern), dim))
    return (clips / np.linalg.norm(clips, axis=1, keepdims=True)).astype(np.float32)


def test_entity_states_split_at_visual_changes() -> None:
    clips = _states([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    assert entity_states(clips, threshold=0.9) == [(0, 3), (3, 5), (5, 9), (9, 10)]
    assert entity_states(clips, threshold=-1.0) == [(0, 10)]


def test_pooling_levels_vectors_and_spans() -> None:
    clips = _states([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    levels = {lv.level: lv for lv in pooling_levels(clips, 19.0, LevelParams(clip_seconds=2.0))}
    assert set(levels) == {"global", "action", "entity"}
    np.testing.assert_allclose(levels["global"].spans_s, [[0.0, 19.0]])
    expected_global = clips.mean(0) / np.linalg.norm(clips.mean(0))
    np.testing.assert_allclose(levels["global"].vectors[0], expected_global, rtol=1e-5)
    assert levels["action"].spans_s.tolist() == [[0, 8], [4, 12], [8, 16], [12, 19]]
    assert levels["entity"].spans_s.tolist() == [[0, 6], [6, 10], [10, 18], [18, 19]]
    for lv in levels.values():
        np.testing.assert_allclose(np.linalg.norm(lv.vectors, axis=1), 1.0, rtol=1e-5)
        assert len(lv.vectors) == len(lv.spans_s)


def test_mean_spans_is_pooling_on_any_range() -> None:
    clips = _states([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    (_, action, entity) = pooling_levels(clips, 20.0, LevelParams())
    np.testing.assert_allclose(mean_spans(clips, [(0, 4), (2, 6)]), action.vectors[:2], rtol=1e-5)
    np.testing.assert_allclose(mean_spans(clips, [(0, 3), (3, 5)]), entity.vectors[:2], rtol=1e-5)
    odd = mean_spans(clips, [(4, 9)])[0]
    expected = clips[4:9].mean(axis=0)
    np.testing.assert_allclose(odd, expected / np.linalg.norm(expected), rtol=1e-5)


def test_registry_and_bad_input() -> None:
    assert level_strategy("pooling") is pooling_levels
    assert action_span_embedder("pooling") is mean_spans
    with pytest.raises(InputError, match="unknown level strategy 'x'; known: pooling"):
        level_strategy("x")
    with pytest.raises(InputError, match="unknown level strategy 'x'"):
        action_span_embedder("x")
    with pytest.raises(InputError):
        pooling_levels(np.zeros((0, 4), np.float32), 1.0, LevelParams())
