"""Filtered search (`allowed_ids`) equals exact search over the allowed vectors."""

import numpy as np
import pytest

from index.index_factory import IndexSpec
from index.vector_index import VectorIndex


def _data(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec(factory="Flat", kind="flat"),
        IndexSpec(factory="IVF16,Flat", kind="ivf_flat", train_size=2000, nprobe=2),
        IndexSpec(factory="IVF16,PQ8,Refine(Flat)", kind="ivf_pq", train_size=2000, nprobe=2),
    ],
)
@pytest.mark.parametrize("share", [0.02, 0.5])
def test_filtered_search_matches_exact(spec: IndexSpec, share: float) -> None:
    data = _data(2000, 16, 0)
    ids = np.arange(1000, 3000, dtype=np.int64)
    index = VectorIndex.build(ids, data, spec, encoder="e", device="cpu")
    rng = np.random.default_rng(1)
    allowed = np.sort(rng.choice(ids, int(share * len(ids)), replace=False))
    queries = _data(5, 16, 2)
    scores, found = index.search(queries, 10, allowed_ids=allowed)
    allowed_rows = allowed - 1000
    exact = queries @ data[allowed_rows].T  # (5, allowed)
    for q in range(len(queries)):
        assert set(found[q].tolist()) <= set(allowed.tolist())
        best = allowed[np.argsort(-exact[q])[:10]]
        recall = len(set(best.tolist()) & set(found[q].tolist())) / 10
        # Exhaustive when rare (share 2%); Flat and re-ranked IVF stay near-exact too.
        assert recall >= (1.0 if share < 0.05 or spec.kind == "flat" else 0.7)
        assert np.all(np.diff(scores[q]) <= 1e-6)
