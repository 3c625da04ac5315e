"""VectorIndex: recall of every index type against exact search, updates, persistence.

Seeded synthetic data with exact ground truth (clustered unit vectors, queries near data
points, a few exact duplicates so that ties occur), in the manner of faiss' contrib
`SyntheticDataset`. Small sizes keep the whole file to a few seconds.
"""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from engine.errors import (
    ConflictError,
    IndexMismatchError,
    IndexUnreadableError,
    InputError,
    VectorIndexError,
)
from index import vector_index
from index.index_factory import IndexSpec, choose_index_spec
from index.vector_index import VectorIndex, knn_recall, knn_recalls

DIM = 32
ENCODER = "test-encoder"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Synthetic:
    """`n` clustered unit vectors (ids 10, 13, 16, ...) and `nq` held-out queries."""

    def __init__(self, n: int = 3000, nq: int = 100, clusters: int = 40, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        centres = _unit(rng.standard_normal((clusters, DIM)))  # (clusters, dim)
        members = rng.integers(0, clusters, n)  # (n,)
        self.vectors = _unit(centres[members] + 0.35 * rng.standard_normal((n, DIM)))
        self.vectors[-20:] = self.vectors[:20]  # exact duplicates: tied scores
        self.ids = np.arange(n, dtype=np.int64) * 3 + 10
        picks = rng.choice(n, nq, replace=False)
        self.queries = _unit(self.vectors[picks] + 0.1 * rng.standard_normal((nq, DIM)))
        self.queries[0] = self.vectors[0]  # (dim,) ties with its duplicate at row n-20

    def exact_scores(self, query_row: int, ids: np.ndarray) -> np.ndarray:
        positions = (ids - 10) // 3
        return self.vectors[positions] @ self.queries[query_row]

    def kth_scores(self, k: int, valid: np.ndarray | None = None) -> np.ndarray:
        base = self.vectors if valid is None else self.vectors[valid]
        scores = self.queries @ base.T  # (nq, n)
        return np.sort(scores, axis=1)[:, -k]

    def recall(self, index: VectorIndex, k: int) -> float:
        _, found = index.search(self.queries, k)
        exact = [self.exact_scores(row, ids) for row, ids in enumerate(found)]
        return knn_recall(exact, self.kth_scores(k), k)


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """Tiny indexes gain nothing from threads, and idle OpenMP threads spin on busy cores."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> Synthetic:
    return Synthetic()


def _spec(factory: str, **overrides: object) -> IndexSpec:
    values: dict = {"factory": factory, "kind": "custom", "train_size": 3000, "recall_k": 10}
    values.update(overrides)
    return IndexSpec(**values)


FACTORIES = [
    "Flat",
    "IVF32,Flat",
    "IVF32,SQ8",
    "IVF32,PQ8x4fs,Refine(SQfp16)",
    "IVF32,PQ8x4fs,Refine(SQ8)",
    "IVF16,PQ8x4fs,RFlat",
]


@pytest.fixture(scope="module")
def built(data: Synthetic) -> dict[str, VectorIndex]:
    return {
        factory: VectorIndex.build(data.ids, data.vectors, _spec(factory), encoder=ENCODER)
        for factory in FACTORIES
    }


# ---- recall ---------------------------------------------------------------------------


def test_knn_recall_counts_ties_as_hits() -> None:
    # True scores 0.9, 0.8, 0.8, 0.1: with k=2 either 0.8 item is a correct second hit.
    assert knn_recall([np.array([0.9, 0.8])], np.array([0.8]), 2) == 1.0
    assert knn_recall([np.array([0.9, 0.1])], np.array([0.8]), 2) == 0.5
    assert knn_recall([np.array([0.8])], np.array([0.8]), 2) == 0.5  # one result short
    per_query = knn_recalls([np.array([0.9, 0.8]), np.array([0.1])], np.array([0.8, 0.5]), 2)
    np.testing.assert_array_equal(per_query, [1.0, 0.0])
    assert knn_recall([], np.zeros(0), 5) == 1.0


def test_exact_index_has_perfect_recall_despite_ties(
    data: Synthetic, built: dict[str, VectorIndex]
) -> None:
    # Query 0 equals a duplicated vector: its two copies tie for first place.
    tied = {int(data.ids[0]), int(data.ids[-20])}
    _, ids = built["Flat"].search(data.queries[0], 1)
    assert int(ids[0][0]) in tied
    for k in (1, 2, 10, 100):
        assert data.recall(built["Flat"], k) == 1.0


@pytest.mark.parametrize("factory", FACTORIES[1:])
def test_tuned_index_reaches_recall_target_on_held_out_queries(
    data: Synthetic, built: dict[str, VectorIndex], factory: str
) -> None:
    index = built[factory]
    assert index.nprobe is not None and 1 <= index.nprobe <= 32
    # Tuned on indexed vectors for recall@10 >= 0.95; checked on unseen queries.
    assert data.recall(index, 10) >= 0.93
    # And the tuning chose a real approximation, not an exhaustive scan.
    if "PQ" not in factory:
        tuned = index.nprobe
        index.nprobe = 1
        try:
            assert data.recall(index, 10) < 0.93
        finally:
            index.nprobe = tuned


def test_tune_on_given_queries_meets_target_on_other_queries(data: Synthetic) -> None:
    spec = _spec("IVF32,PQ8x4fs,Refine(SQfp16)", nprobe=1, refine_k_factor=4)
    index = VectorIndex.build(data.ids, data.vectors, spec, encoder=ENCODER)
    assert index.nprobe == 1 and data.recall(index, 10) < 0.8  # fixed nprobe: not tuned
    tuning = Synthetic(nq=200, seed=0)  # same collection, other queries
    tuning.queries = tuning.queries[100:]
    reached = index.tune(data.ids, data.vectors, replace(spec, nprobe=None), queries=tuning.queries)
    assert reached >= 0.95 and index.nprobe is not None and index.nprobe > 1
    assert index.refine_k_factor >= 4
    assert data.recall(index, 10) >= 0.93
    # build() passes the same queries to the same tuning: the same setting comes out.
    rebuilt = VectorIndex.build(
        data.ids,
        data.vectors,
        replace(spec, nprobe=None),
        encoder=ENCODER,
        tuning_queries=tuning.queries,
    )
    assert (rebuilt.nprobe, rebuilt.refine_k_factor) == (index.nprobe, index.refine_k_factor)
    with pytest.raises(InputError, match="exactly the indexed ids"):
        index.tune(data.ids[1:], data.vectors[1:], spec)
    with pytest.raises(VectorIndexError, match="not an IVF"):
        VectorIndex.build(data.ids, data.vectors, _spec("Flat"), encoder=ENCODER).tune(
            data.ids, data.vectors, spec
        )


def test_pq_without_refine_is_what_refine_fixes(data: Synthetic) -> None:
    spec = _spec("IVF32,PQ8x4fs", nprobe=32)
    plain = VectorIndex.build(data.ids, data.vectors, spec, encoder=ENCODER)
    refined = VectorIndex.build(
        data.ids, data.vectors, _spec("IVF32,PQ8x4fs,Refine(SQfp16)", nprobe=32), encoder=ENCODER
    )
    assert data.recall(refined, 10) > data.recall(plain, 10) + 0.1


def test_chosen_specs_build_and_meet_target(data: Synthetic) -> None:
    n = len(data.ids)
    # A budget below the float32 size pushes the choice to PQ with an fp16 re-ranking store.
    spec = choose_index_spec(n, DIM, n * (4 * DIM + 8) - 1, exact_max_vectors=1000, recall_k=10)
    assert spec.kind == "ivf_pq" and spec.refine_factory == "SQfp16"
    index = VectorIndex.build(data.ids, data.vectors, spec, encoder=ENCODER)
    assert data.recall(index, 10) >= 0.93
    spec = choose_index_spec(n, DIM, 1 << 30, exact_max_vectors=1000, recall_k=10)
    assert spec.kind == "ivf_flat"
    index = VectorIndex.build(data.ids, data.vectors, spec, encoder=ENCODER)
    assert data.recall(index, 10) >= 0.93


# ---- search shape ---------------------------------------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
def test_search_results_sorted_unique_and_batched_like_single(
    data: Synthetic, built: dict[str, VectorIndex], factory: str
) -> None:
    index = built[factory]
    scores, ids = index.search(data.queries[:8], 10)
    assert len(scores) == len(ids) == 8
    for row in range(8):
        assert ids[row].dtype == np.int64 and scores[row].dtype == np.float32
        assert len(set(ids[row].tolist())) == len(ids[row]) == 10
        assert np.all(np.diff(scores[row]) <= 1e-6)
        assert np.isin(ids[row], data.ids).all()
        one_scores, one_ids = index.search(data.queries[row], 10)
        np.testing.assert_array_equal(one_ids[0], ids[row])
        np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-5)


def test_k_larger_than_count_returns_everything() -> None:
    data = Synthetic(n=40, nq=3, clusters=4)
    index = VectorIndex.build(data.ids, data.vectors, _spec("Flat"), encoder=ENCODER)
    scores, ids = index.search(data.queries, 1000)
    for row in range(3):
        assert sorted(ids[row].tolist()) == data.ids.tolist()
        np.testing.assert_allclose(scores[row], data.exact_scores(row, ids[row]), atol=1e-5)


def test_short_ivf_results_drop_missing_ids(data: Synthetic) -> None:
    index = VectorIndex.build(
        data.ids, data.vectors, _spec("IVF32,Flat", nprobe=1), encoder=ENCODER
    )
    _, ids = index.search(data.queries, len(data.ids))
    assert all(0 < len(row) < len(data.ids) for row in ids)
    assert all((row >= 0).all() for row in ids)


def test_empty_index_searches_and_grows(data: Synthetic) -> None:
    index = VectorIndex.build(
        np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), _spec("Flat"), encoder=ENCODER
    )
    assert len(index) == 0
    scores, ids = index.search(data.queries[:2], 5)
    assert [len(row) for row in ids] == [0, 0] and [len(row) for row in scores] == [0, 0]
    index.add(data.ids[:10], data.vectors[:10])
    assert len(index) == 10 and int(data.ids[3]) in index


# ---- updates --------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat", "IVF32,PQ8x4fs,Refine(SQfp16)"])
def test_remove_makes_ids_disappear_and_add_brings_them_back(data: Synthetic, factory: str) -> None:
    spec = _spec(factory, nprobe=32, refine_k_factor=32)
    index = VectorIndex.build(data.ids, data.vectors, spec, encoder=ENCODER)
    gone = data.ids[::7]
    assert index.remove(np.concatenate([gone, [999_999_999]])) == len(gone)
    assert index.remove(gone) == 0
    assert len(index) == len(data.ids) - len(gone)
    assert not np.isin(gone, index.ids()).any()
    _, ids = index.search(data.queries[:5], len(data.ids))
    for row in ids:
        assert not np.isin(row, gone).any()
        assert len(row) == len(index)  # nprobe = nlist: every remaining vector is found
    keep = ~np.isin(data.ids, gone)
    _, found = index.search(data.queries, 10)
    exact = [data.exact_scores(row, ids) for row, ids in enumerate(found)]
    assert knn_recall(exact, data.kth_scores(10, keep), 10) >= 0.95
    index.add(gone, data.vectors[::7])
    assert len(index) == len(data.ids)
    np.testing.assert_array_equal(index.ids(), data.ids)
    with pytest.raises(ConflictError, match="already in the index"):
        index.add(gone[:2], data.vectors[:2])


@pytest.mark.parametrize(
    ("refine", "tolerance"), [("RFlat", 1e-5), ("Refine(SQfp16)", 2e-3), ("Refine(SQ8)", 3e-2)]
)
def test_reranked_scores_come_from_the_right_stored_vectors(
    data: Synthetic, refine: str, tolerance: float
) -> None:
    spec = _spec(f"IVF16,PQ8x4fs,{refine}", nprobe=16, refine_k_factor=8)
    index = VectorIndex.build(data.ids, data.vectors, spec, encoder=ENCODER)
    for _ in range(2):  # before and after updates reorder the stored rows
        scores, ids = index.search(data.queries[:20], 10)
        for row in range(20):
            np.testing.assert_allclose(
                scores[row], data.exact_scores(row, ids[row]), atol=tolerance
            )
        index.remove(data.ids[:1500:2])
        index.add(data.ids[:1500:2], data.vectors[:1500:2])


def test_removal_unsupported_by_type_is_a_clear_error(data: Synthetic) -> None:
    index = VectorIndex.build(data.ids[:200], data.vectors[:200], _spec("HNSW8"), encoder=ENCODER)
    with pytest.raises(VectorIndexError, match="cannot remove"):
        index.remove(data.ids[:3])


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (np.array([1, 2]), np.ones((2, DIM), np.float32), "L2-normalised"),
        (np.array([1, -2]), None, ">= 0"),
        (np.array([1, 1]), None, "duplicate"),
        (np.array([1, 2, 3]), None, "3 ids for 2"),
        (np.array([1.5, 2.0]), None, "integer"),
    ],
)
def test_bad_input_is_refused(ids: np.ndarray, vectors: np.ndarray | None, message: str) -> None:
    unit = _unit(np.random.default_rng(1).standard_normal((2, DIM)))
    with pytest.raises(InputError, match=message):
        VectorIndex.build(ids, unit if vectors is None else vectors, _spec("Flat"), encoder=ENCODER)


def test_bad_queries_are_refused(built: dict[str, VectorIndex], data: Synthetic) -> None:
    index = built["Flat"]
    with pytest.raises(InputError, match="shape"):
        index.search(np.ones((2, DIM + 1), np.float32), 3)
    with pytest.raises(InputError, match="k must be"):
        index.search(data.queries[:1], 0)
    with pytest.raises(InputError, match="NaN"):
        index.search(np.full((1, DIM), np.nan, np.float32), 3)


# ---- persistence ----------------------------------------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
def test_save_load_restores_identical_results(
    tmp_path: Path, data: Synthetic, built: dict[str, VectorIndex], factory: str
) -> None:
    index = built[factory]
    manifest = index.save(tmp_path / "idx")
    assert manifest.encoder == ENCODER and manifest.dim == DIM and manifest.factory == factory
    assert manifest.count == len(data.ids) and manifest.nprobe == index.nprobe
    assert manifest.metric == "inner_product" and manifest.format_version == 1
    loaded = VectorIndex.load(tmp_path / "idx", ENCODER, DIM)
    assert len(loaded) == len(index) and loaded.nprobe == index.nprobe
    assert loaded.refine_k_factor == index.refine_k_factor
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    before = index.search(data.queries, 20)
    after = loaded.search(data.queries, 20)
    for row in range(len(data.queries)):
        np.testing.assert_array_equal(after[1][row], before[1][row])
        np.testing.assert_array_equal(after[0][row], before[0][row])


def test_load_refuses_another_encoder_or_dim(tmp_path: Path, built: dict[str, VectorIndex]) -> None:
    built["Flat"].save(tmp_path)
    with pytest.raises(IndexMismatchError, match="other-encoder"):
        VectorIndex.load(tmp_path, "other-encoder", DIM)
    with pytest.raises(IndexMismatchError, match="dim 64"):
        VectorIndex.load(tmp_path, ENCODER, 64)
    assert IndexMismatchError.code == "index_mismatch"


def test_missing_or_damaged_index_is_reported(
    tmp_path: Path, built: dict[str, VectorIndex]
) -> None:
    with pytest.raises(IndexUnreadableError, match="no vector index"):
        VectorIndex.load(tmp_path / "absent", ENCODER, DIM)
    manifest = built["IVF32,Flat"].save(tmp_path)
    data_file = tmp_path / manifest.data_dir / "base.faiss"
    blob = bytearray(data_file.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one flipped byte
    data_file.write_bytes(bytes(blob))
    with pytest.raises(IndexUnreadableError, match=r"damaged.*checksum"):
        VectorIndex.load(tmp_path, ENCODER, DIM)
    data_file.write_bytes(bytes(blob[:1000]))  # truncated
    with pytest.raises(IndexUnreadableError, match="damaged"):
        VectorIndex.load(tmp_path, ENCODER, DIM, verify=False)
    data_file.unlink()
    with pytest.raises(IndexUnreadableError, match="missing"):
        VectorIndex.load(tmp_path, ENCODER, DIM)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexUnreadableError, match="damaged index manifest"):
        VectorIndex.load(tmp_path, ENCODER, DIM)


def test_failed_save_leaves_previous_index_intact(
    tmp_path: Path, data: Synthetic, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec("IVF16,PQ8x4fs,Refine(SQfp16)", nprobe=16)
    index = VectorIndex.build(data.ids[:2000], data.vectors[:2000], spec, encoder=ENCODER)
    first = index.save(tmp_path)
    expected = index.search(data.queries, 10)
    index.add(data.ids[2000:], data.vectors[2000:])
    real_write = faiss.write_index
    calls: list[str] = []

    def crash_on_second_file(obj: faiss.Index, path: str) -> None:
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"partial")  # half-written file, then the failure
            raise RuntimeError("disk full (injected)")
        real_write(obj, path)

    monkeypatch.setattr(vector_index.faiss, "write_index", crash_on_second_file)
    with pytest.raises(VectorIndexError, match="injected"):
        index.save(tmp_path)
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [first.data_dir, "manifest.json", "write.lock"]
    )
    loaded = VectorIndex.load(tmp_path, ENCODER, DIM)
    assert len(loaded) == 2000
    got = loaded.search(data.queries, 10)
    for row in range(len(data.queries)):
        np.testing.assert_array_equal(got[1][row], expected[1][row])
    monkeypatch.setattr(vector_index.faiss, "write_index", real_write)
    second = index.save(tmp_path)  # a later save succeeds and replaces the old version
    assert second.data_dir != first.data_dir and not (tmp_path / first.data_dir).exists()
    assert len(VectorIndex.load(tmp_path, ENCODER, DIM)) == len(data.ids)


# ---- threads and GPU guard ------------------------------------------------------------


def test_search_threads_apply_to_the_call_only(
    built: dict[str, VectorIndex], data: Synthetic, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = built["IVF32,Flat"]
    before = faiss.omp_get_max_threads()
    real_set = faiss.omp_set_num_threads
    calls: list[int] = []

    def recording_set(threads: int) -> None:
        calls.append(threads)
        real_set(threads)

    monkeypatch.setattr(vector_index.faiss, "omp_set_num_threads", recording_set)
    index.search(data.queries[:1], 5)  # automatic: one query runs on one thread
    assert calls == [1, before]
    calls.clear()
    index.search(data.queries[: vector_index.SMALL_BATCH], 5)  # a batch keeps every core
    assert calls == []
    index.search_threads = 3
    try:
        _, ids = index.search(data.queries[:20], 5)
    finally:
        index.search_threads = 0
    assert calls == [3, before] and faiss.omp_get_max_threads() == before
    assert [len(row) for row in ids] == [5] * 20


def test_gpu_copy_used_when_faiss_reports_gpus(
    data: Synthetic, monkeypatch: pytest.MonkeyPatch
) -> None:
    clones: list[object] = []

    def fake_clone(index: object) -> object:
        clones.append(index)
        return index  # stands in for the GPU copy

    monkeypatch.setattr(vector_index.faiss, "get_num_gpus", lambda: 1, raising=False)
    index = VectorIndex.build(
        data.ids[:100], data.vectors[:100], _spec("Flat"), encoder=ENCODER, gpu_clone=fake_clone
    )
    assert index.uses_gpu
    index.search(data.queries[:2], 5)
    index.search(data.queries[:2], 5)
    assert len(clones) == 1  # one copy, reused
    index.add(data.ids[100:110], data.vectors[100:110])
    _, ids = index.search(data.queries[:2], 200)
    assert len(clones) == 2 and len(ids[0]) == 110  # the copy was remade after the change

    def broken_clone(index: object) -> object:
        raise RuntimeError("no GPU support for this index")

    fallback = VectorIndex.build(
        data.ids[:100], data.vectors[:100], _spec("Flat"), encoder=ENCODER, gpu_clone=broken_clone
    )
    assert len(fallback.search(data.queries[:1], 5)[1][0]) == 5
    assert not fallback.uses_gpu


def test_cpu_only_faiss_never_clones(data: Synthetic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_index.faiss, "get_num_gpus", lambda: 0, raising=False)

    def must_not_clone(index: object) -> object:
        raise AssertionError("cloned to a GPU that faiss does not report")

    index = VectorIndex.build(
        data.ids[:50], data.vectors[:50], _spec("Flat"), encoder=ENCODER, gpu_clone=must_not_clone
    )
    index.search(data.queries[:1], 5)
    assert not index.uses_gpu
    with pytest.raises(VectorIndexError, match="no GPU"):
        VectorIndex.build(
            data.ids[:50], data.vectors[:50], _spec("Flat"), encoder=ENCODER, device="cuda"
        )
