"""One FAISS vector index per collection and level: build, add, remove, search, save, load.

Vectors are L2-normalised embeddings and similarity is the inner product. Ids are the
catalog's int64 segment ids: IVF indexes store them directly, other types sit behind an
`IndexIDMap2`, so `remove(ids)` of a deleted video drops its vectors. An optional
re-ranking store (an `IndexIDMap2` over fp16/SQ8/float codes, `,Refine(...)` in the
factory string) re-scores the `refine_k_factor * k` best candidates of the searched
index: the same idea as faiss' `IndexRefine`, keyed by catalog id so removal works.

`VectorIndex.build(ids, vectors, spec, encoder=...)` trains on a sample (spec.train_size),
adds everything in one call (what `vtr reindex` needs) and, for IVF types, tunes nprobe
(and the re-ranking depth) to `spec.recall_target` at `spec.recall_k` (`tune`): given or
sampled queries, exact search for their true neighbours (ties count as hits), and the
cheapest setting whose recall clears the target by one standard error is kept (the FAISS
wiki's auto-tuning recipe, reduced to the two knobs that matter here).

Concurrency: searches may run from several threads at once; add, remove, tune and save
need the caller to hold the index exclusively. The OpenMP thread count is set per call
(`search_threads`; by default one thread for small batches, measured in bench/index.py).

GPU: when faiss reports GPUs (`faiss.get_num_gpus() > 0`, device "auto" or "cuda"),
searches run on a GPU copy of the searched index, made on first use and dropped on every
change; CPU-only faiss never takes that path. Persistence: index/index_store.py.

Run `python bench/index.py --sizes 10000` for figures; tests: tests/index/.
"""

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from engine.errors import (
    ConflictError,
    IndexMismatchError,
    IndexUnreadableError,
    InputError,
    VectorIndexError,
)
from index import index_store
from index.index_factory import IndexSpec, split_refine
from index.index_store import IndexManifest

log = logging.getLogger(__name__)

# Below this share of the index, a filtered IVF search visits every cell (exhaustive).
SELECTIVE_FILTER_SHARE = 0.05

METRIC = "inner_product"
BASE_FILE = "base.faiss"
REFINE_FILE = "refine.faiss"
NORM_TOLERANCE = 1e-2  # |norm - 1| accepted for "L2-normalised" input
_TIE_TOLERANCE = 1e-5  # exact scores this close to the k-th true score count as hits
_MAX_K_FACTOR_DOUBLINGS = 3
SMALL_BATCH = 16  # with search_threads = 0, fewer queries than this run on one thread
_CHECK_ROWS = 65536  # rows per block when validating input vectors
_RERANK_QUERIES = 32  # queries per block when re-ranking (bounds the gathered vectors)
# Tuning cost model: re-ranking one candidate costs about as much as scanning this many
# codes of the searched index (4-bit PQ, dim 512, measured with bench/index.py).
RERANK_COST = 50.0

_FP16 = faiss.ScalarQuantizer.QT_fp16

GpuClone = Callable[[Any], Any]


def gpu_count() -> int:
    """GPUs faiss can use (0 with CPU-only faiss)."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None:
        return 0
    try:
        return int(get_num_gpus())
    except RuntimeError:
        return 0


def _use_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    gpus = gpu_count()
    if device == "cuda" and gpus == 0:
        raise VectorIndexError(
            "[index] device is 'cuda' but faiss reports no GPU (install faiss-gpu or use 'auto')"
        )
    if device not in ("auto", "cuda"):
        raise InputError(f"unknown index device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return gpus > 0


def _default_gpu_clone(index: Any) -> Any:
    return faiss.index_cpu_to_all_gpus(index)


def knn_recalls(
    found_exact_scores: Sequence[np.ndarray], kth_true_scores: np.ndarray, k: int
) -> np.ndarray:
    """Recall@k of each query, with ties: a found id is a hit when its exact score reaches
    the k-th best.

    `found_exact_scores[i]` holds the exact similarities of the (distinct) ids returned for
    query i, `kth_true_scores[i]` the k-th best exact similarity over the whole collection.
    """
    hits = [
        min(k, int(np.count_nonzero(s[:k] >= t - _TIE_TOLERANCE)))
        for s, t in zip(found_exact_scores, kth_true_scores, strict=True)
    ]
    return np.asarray(hits, dtype=np.float64) / k  # (nq,)


def knn_recall(
    found_exact_scores: Sequence[np.ndarray], kth_true_scores: np.ndarray, k: int
) -> float:
    """Mean of `knn_recalls` (1.0 for no queries)."""
    if len(found_exact_scores) == 0:
        return 1.0
    return float(knn_recalls(found_exact_scores, kth_true_scores, k).mean())


def _as_ids(ids: Any) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"ids must be a 1-d integer array, got shape {array.shape} {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.int64)
    if array.size and array.min() < 0:
        raise InputError("ids must be >= 0 (-1 marks a missing result)")
    return array


def _as_unit_vectors(vectors: Any, dim: int | None, what: str) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim == 1 and what == "queries":
        array = array[None, :]  # (1, dim)
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, dim)"
        raise InputError(f"{what} must have shape {want}, got {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)  # (n, dim)
    for start in range(0, len(array), _CHECK_ROWS):  # blocks: no (n, dim) temporaries
        block = array[start : start + _CHECK_ROWS]  # (rows, dim)
        squared = np.einsum("ij,ij->i", block, block)  # (rows,)
        if not np.isfinite(squared).all():
            raise InputError(f"{what} contain NaN or infinite values")
        worst = float(np.abs(np.sqrt(squared) - 1.0).max())
        if worst > NORM_TOLERANCE:
            raise InputError(f"{what} must be L2-normalised (a norm is off by {worst:.3g})")
    return array


def _new_index(dim: int, factory: str) -> Any:
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise VectorIndexError(f"faiss cannot build {factory!r} for dim {dim}: {e}") from e


def _stored_ids(base: Any) -> np.ndarray:
    """Every id held by `base` (IVF lists or IndexIDMap2), sorted."""
    ivf: Any = faiss.try_extract_index_ivf(base)
    if ivf is not None:
        invlists = ivf.invlists
        parts = [np.zeros(0, dtype=np.int64)]
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                pointer = invlists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(pointer, size).copy())
                invlists.release_ids(list_no, pointer)
        return np.sort(np.concatenate(parts))
    if isinstance(base, faiss.IndexIDMap2):
        return np.sort(faiss.vector_to_array(base.id_map).astype(np.int64))
    raise IndexUnreadableError(f"unexpected stored index type {type(base).__name__}")


class VectorIndex:
    """One FAISS index of catalog-id-keyed unit vectors; see the module docstring."""

    def __init__(
        self,
        base: Any,
        refine: Any | None,
        *,
        encoder: str,
        factory: str,
        nprobe: int | None = None,
        refine_k_factor: float = 1.0,
        settings_hash: str = "",
        device: str = "auto",
        search_threads: int = 0,
        gpu_clone: GpuClone = _default_gpu_clone,
        ids: np.ndarray | None = None,
    ) -> None:
        self._base = base
        self._refine = refine
        self.encoder = encoder
        self.factory = factory
        self.dim = int(base.d)
        self.refine_k_factor = float(refine_k_factor)
        self.settings_hash = settings_hash
        self.search_threads = search_threads
        self._ivf: Any = faiss.try_extract_index_ivf(base)
        self._ids = _stored_ids(base) if ids is None else ids  # sorted
        self._use_gpu = _use_gpu(device)
        self._gpu_clone = gpu_clone
        self._gpu_base: Any | None = None
        self._gpu_failed = False
        self._refine_rows: np.ndarray | None = None
        self._nprobe: int | None = None
        if nprobe is not None:
            self.nprobe = nprobe

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Any,
        vectors: Any,
        spec: IndexSpec,
        *,
        encoder: str,
        device: str = "auto",
        search_threads: int = 0,
        seed: int = 0,
        tuning_queries: Any | None = None,
        gpu_clone: GpuClone = _default_gpu_clone,
    ) -> "VectorIndex":
        """A new index over `vectors` (n, dim) keyed by `ids` (n,), trained and tuned.

        IVF types without a fixed `spec.nprobe` are tuned (see `tune`) on `tuning_queries`
        (nq, dim) when given (e.g. a sample of real text queries), else on indexed vectors.
        """
        id_array = _as_ids(ids)
        data = _as_unit_vectors(vectors, None, "vectors")  # (n, dim)
        n, dim = data.shape
        if len(id_array) != n:
            raise InputError(f"{len(id_array)} ids for {n} vectors")
        if dim < 1:
            raise InputError("vectors must have at least one dimension")
        sorted_ids = np.sort(id_array)
        if n and np.any(sorted_ids[1:] == sorted_ids[:-1]):
            raise InputError("duplicate ids in one build")
        base_factory, refine_factory = split_refine(spec.factory)
        base = _new_index(dim, base_factory)
        if faiss.try_extract_index_ivf(base) is None and not isinstance(base, faiss.IndexIDMap2):
            base = faiss.IndexIDMap2(base)
        refine = None
        if refine_factory is not None:
            refine = faiss.IndexIDMap2(_new_index(dim, refine_factory))
        rng = np.random.default_rng(seed)
        _train(base, refine, data, spec, rng, use_gpu=_use_gpu(device))
        is_ivf = faiss.try_extract_index_ivf(base) is not None
        index = cls(
            base,
            refine,
            encoder=encoder,
            factory=spec.factory,
            nprobe=spec.nprobe if is_ivf else None,
            refine_k_factor=spec.refine_k_factor if refine is not None else 1.0,
            settings_hash=spec.settings_hash,
            device=device,
            search_threads=search_threads,
            gpu_clone=gpu_clone,
            ids=np.zeros(0, dtype=np.int64),
        )
        index._add_checked(id_array, data)
        if is_ivf and spec.nprobe is None:
            index.tune(id_array, data, spec, queries=tuning_queries, seed=seed)
        log.info(
            "built %s over %d vectors (dim %d, nprobe %s, k-factor %.1f)",
            spec.factory,
            n,
            dim,
            index.nprobe,
            index.refine_k_factor,
        )
        return index

    # ---- properties ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int | np.integer):
            return False
        pos = int(np.searchsorted(self._ids, item))
        return pos < len(self._ids) and int(self._ids[pos]) == int(item)

    def ids(self) -> np.ndarray:
        """A sorted copy of every id in the index."""
        return self._ids.copy()

    @property
    def nprobe(self) -> int | None:
        """IVF cells visited per query (None for non-IVF indexes)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._ivf is None:
            raise VectorIndexError(f"{self.factory!r} is not an IVF index: it has no nprobe")
        if value < 1:
            raise InputError(f"nprobe must be >= 1, got {value}")
        self._nprobe = min(int(value), int(self._ivf.nlist))
        self._ivf.nprobe = self._nprobe
        self._gpu_base = None

    @property
    def uses_gpu(self) -> bool:
        """True when searches run on a GPU copy of the index."""
        return self._use_gpu and not self._gpu_failed

    # ---- updates ------------------------------------------------------------------------

    def add(self, ids: Any, vectors: Any) -> None:
        """Add `vectors` (n, dim) under new `ids` (n,); an id already present is refused."""
        id_array = _as_ids(ids)
        data = _as_unit_vectors(vectors, self.dim, "vectors")  # (n, dim)
        if len(id_array) != len(data):
            raise InputError(f"{len(id_array)} ids for {len(data)} vectors")
        self._add_checked(id_array, data)

    def _add_checked(self, ids: np.ndarray, data: np.ndarray) -> None:
        if len(ids) == 0:
            return
        new_sorted = np.sort(ids)
        if np.any(new_sorted[1:] == new_sorted[:-1]):
            raise InputError("duplicate ids in one add")
        clash = new_sorted[np.isin(new_sorted, self._ids, assume_unique=True)]
        if len(clash):
            raise ConflictError(
                f"{len(clash)} ids are already in the index (e.g. {clash[:5].tolist()}); "
                "remove them first"
            )
        try:
            self._base.add_with_ids(data, ids)
        except RuntimeError as e:
            raise VectorIndexError(f"cannot add to {self.factory!r}: {e}") from e
        if self._refine is not None:
            try:
                self._refine.add_with_ids(data, ids)
            except RuntimeError as e:
                self._base.remove_ids(faiss.IDSelectorBatch(ids))
                raise VectorIndexError(f"cannot add to the re-ranking store: {e}") from e
        positions = np.searchsorted(self._ids, new_sorted)
        self._ids = np.insert(self._ids, positions, new_sorted)
        self._gpu_base = None
        self._refine_rows = None

    def remove(self, ids: Any) -> int:
        """Remove the vectors of `ids`; ids not in the index are ignored. Returns the count."""
        id_array = np.unique(_as_ids(ids))
        present = id_array[np.isin(id_array, self._ids, assume_unique=True)]
        if len(present) == 0:
            return 0
        try:
            removed = int(self._base.remove_ids(faiss.IDSelectorBatch(present)))
            if self._refine is not None:
                self._refine.remove_ids(faiss.IDSelectorBatch(present))
        except RuntimeError as e:
            raise VectorIndexError(
                f"index type {self.factory!r} cannot remove vectors ({e}); "
                "choose a removable type and rebuild it with `vtr reindex`"
            ) from e
        if removed != len(present):
            raise VectorIndexError(f"removed {removed} vectors for {len(present)} known ids")
        self._ids = self._ids[~np.isin(self._ids, present, assume_unique=True)]
        self._gpu_base = None
        self._refine_rows = None
        return removed

    # ---- search -------------------------------------------------------------------------

    def _searched(self) -> Any:
        if not self._use_gpu or self._gpu_failed:
            return self._base
        if self._gpu_base is None:
            try:
                self._gpu_base = self._gpu_clone(self._base)
                if self._nprobe is not None:
                    faiss.GpuParameterSpace().set_index_parameter(
                        self._gpu_base, "nprobe", self._nprobe
                    )
            except (RuntimeError, AttributeError) as e:
                log.warning("searching %s on CPU: no GPU copy (%s)", self.factory, e)
                self._gpu_failed = True
                return self._base
        return self._gpu_base

    def search(
        self, queries: Any, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The `k` best ids per query, by descending inner product.

        `queries` is (nq, dim) or one (dim,) vector. Returns `(scores, ids)`: two lists
        with one 1-d array per query (float32 scores, int64 ids), missing results (-1)
        dropped, so a row is shorter than k when the index holds fewer matches.
        `allowed_ids` restricts the search to those ids inside FAISS (an id selector),
        before the top-k cut; an IVF index then visits every cell when the allowed ids
        are a small share of the index, so rare matches are not missed.
        """
        q = _as_unit_vectors(queries, self.dim, "queries")  # (nq, dim)
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        nq, n = len(q), len(self)
        if n == 0 or nq == 0:
            empty = [np.zeros(0, dtype=np.float32) for _ in range(nq)]
            return empty, [np.zeros(0, dtype=np.int64) for _ in range(nq)]
        k = min(k, n)
        depth = k if self._refine is None else min(n, max(k, math.ceil(k * self.refine_k_factor)))
        # OpenMP threads for this call (the setting is per calling thread): a small batch
        # runs on one, as waking more costs more than they save (bench/index.py).
        threads = self.search_threads or (1 if nq < SMALL_BATCH else 0)
        previous_threads = faiss.omp_get_max_threads()
        if threads > 0:
            faiss.omp_set_num_threads(threads)
        try:
            if allowed_ids is None:
                distances, labels = self._searched().search(q, depth)  # (nq, depth) each
            else:
                params = self._selector_params(allowed_ids)
                distances, labels = self._base.search(q, depth, params=params)
        except RuntimeError as e:
            raise VectorIndexError(f"search failed in {self.factory!r}: {e}") from e
        finally:
            if threads > 0:
                faiss.omp_set_num_threads(previous_threads)
        if self._refine is not None:
            distances, labels = self._rerank(q, distances, labels)
        scores_out: list[np.ndarray] = []
        ids_out: list[np.ndarray] = []
        for row in range(nq):
            keep = labels[row, :k] >= 0  # -1: no result (fewer matches than k)
            scores_out.append(np.ascontiguousarray(distances[row, :k][keep], dtype=np.float32))
            ids_out.append(np.ascontiguousarray(labels[row, :k][keep], dtype=np.int64))
        return scores_out, ids_out

    def _selector_params(self, allowed_ids: np.ndarray) -> Any:
        """Search parameters that admit only `allowed_ids` (CPU index: GPUs lack selectors)."""
        allowed = _as_ids(allowed_ids)
        selector = faiss.IDSelectorBatch(len(allowed), faiss.swig_ptr(allowed))
        params: Any
        if self._ivf is None:
            params = faiss.SearchParameters()
        else:
            params = faiss.SearchParametersIVF()
            rare = len(allowed) < SELECTIVE_FILTER_SHARE * max(len(self), 1)
            params.nprobe = int(self._ivf.nlist) if rare else int(self._ivf.nprobe)
        params.sel = selector
        params.keep_alive = (selector, allowed)  # the selector reads this memory
        return params

    def _stored_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Decoded re-ranking vectors of `ids` (m,) -> (m, dim) float32.

        Codes of a flat store (SQ / Flat) are gathered straight from its buffer and decoded
        in one call: several times faster than one `reconstruct` per id through the id map.
        """
        refine: Any = self._refine
        inner: Any = faiss.downcast_index(refine.index)
        if not isinstance(inner, faiss.IndexFlatCodes):
            return np.asarray(refine.reconstruct_batch(ids), dtype=np.float32)
        if self._refine_rows is None:  # row of the i-th smallest id; rebuilt after changes
            self._refine_rows = np.argsort(faiss.vector_to_array(refine.id_map), kind="stable")
        # Sorted lookups walk the id and code arrays in order (far fewer cache misses).
        unique, inverse = np.unique(ids, return_inverse=True)  # (u,), (m,)
        rows = self._refine_rows[np.searchsorted(self._ids, unique)]  # (u,)
        size = int(inner.ntotal) * int(inner.code_size)
        # A fresh view per call: the buffer moves when vectors are added.
        codes = faiss.rev_swig_ptr(inner.codes.data(), size).reshape(-1, inner.code_size)
        if isinstance(inner, faiss.IndexScalarQuantizer) and inner.sq.qtype == _FP16:
            decoded = codes[rows].view(np.float16).astype(np.float32)  # (u, dim)
        else:
            decoded = np.asarray(inner.sa_decode(codes[rows]), dtype=np.float32)  # (u, dim)
        return decoded[inverse]  # (m, dim)

    def _rerank(
        self, q: np.ndarray, distances: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidates with the re-ranking store's vectors; best first, -1 last."""
        scores = np.full(labels.shape, -np.inf, dtype=np.float32)  # (nq, depth)
        for start in range(0, len(q), _RERANK_QUERIES):
            block = labels[start : start + _RERANK_QUERIES]  # (b, depth)
            rows, cols = np.nonzero(block >= 0)  # (m,) each
            if len(rows) == 0:
                continue
            stored = self._stored_vectors(block[rows, cols])  # (m, dim)
            queries = q[start : start + _RERANK_QUERIES][rows]  # (m, dim)
            scores[start + rows, cols] = np.einsum("ij,ij->i", stored, queries)  # (m,)
        order = np.argsort(-scores, axis=1, kind="stable")  # (nq, depth)
        labels = np.take_along_axis(labels, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        labels[~np.isfinite(scores)] = -1
        return scores, labels

    # ---- tuning -------------------------------------------------------------------------

    def tune(
        self,
        ids: Any,
        vectors: Any,
        spec: IndexSpec,
        *,
        queries: Any | None = None,
        seed: int = 0,
    ) -> float:
        """Set the cheapest nprobe and re-ranking depth reaching spec.recall_target.

        `ids`/`vectors` must be everything indexed: exact search over them is the ground
        truth. `queries` (nq, dim) are representative queries; without them
        `spec.tune_queries` indexed vectors serve, each excluding itself from the results.
        A setting passes when its mean recall@recall_k minus one standard error of that
        mean reaches the target, so that unseen queries of the same kind meet it too.
        Candidates: nprobe doubling then bisected, for k-factors doubling from the current
        one (re-ranking indexes only); cost = vectors scanned + RERANK_COST * re-ranked.
        Returns the mean recall of the chosen setting on the tuning queries.
        """
        if self._ivf is None:
            raise VectorIndexError(f"{self.factory!r} is not an IVF index: nothing to tune")
        id_array = _as_ids(ids)
        data = _as_unit_vectors(vectors, self.dim, "vectors")  # (n, dim)
        if len(id_array) != len(data) or not np.array_equal(np.sort(id_array), self._ids):
            raise InputError("tune needs exactly the indexed ids and their vectors")
        n = len(data)
        nlist = int(self._ivf.nlist)
        order = np.argsort(id_array)
        sorted_ids = id_array[order]
        if queries is None:
            k = min(spec.recall_k, n - 1)
            picks = np.random.default_rng(seed).choice(
                n, size=min(spec.tune_queries, n), replace=False
            )
            tune_q = data[picks]  # (nq, dim)
            excluded: np.ndarray | None = id_array[picks]
            # Each query is an indexed vector: its own entry (score 1) is among the k+1
            # best, so the (k+1)-th best overall is the k-th best of the others.
            extra = 1
        else:
            k = min(spec.recall_k, n)
            tune_q = _as_unit_vectors(queries, self.dim, "queries")
            excluded, extra = None, 0
        if k < 1 or len(tune_q) == 0:
            self.nprobe = nlist
            return 1.0
        true_scores, _ = faiss.knn(tune_q, data, k + extra, metric=faiss.METRIC_INNER_PRODUCT)
        kth_true = true_scores[:, k + extra - 1]  # (nq,)

        def recall(nprobe: int) -> tuple[float, bool]:
            self.nprobe = nprobe
            _, found_ids = self.search(tune_q, k + extra)
            exact = []
            for row, found in enumerate(found_ids):
                if excluded is not None:
                    found = found[found != excluded[row]]
                positions = order[np.searchsorted(sorted_ids, found[:k])]
                exact.append(data[positions] @ tune_q[row])  # (k,)
            values = knn_recalls(exact, kth_true, k)  # (nq,)
            error = float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
            mean = float(values.mean())
            return mean, mean - error >= spec.recall_target

        factors = [1.0]
        if self._refine is not None:
            factors = [spec.refine_k_factor * 2**i for i in range(_MAX_K_FACTOR_DOUBLINGS + 1)]
        list_size = n / nlist

        def cost(probe: int, factor: float) -> float:
            return probe * list_size + RERANK_COST * math.ceil(k * factor)

        best_seen = (-1.0, nlist, factors[0])  # (recall, nprobe, factor)
        chosen: tuple[float, int, float, float] | None = None  # (cost, nprobe, factor, recall)
        for factor in factors:
            self.refine_k_factor = factor
            low, probe, reached, passing = 0, 1, False, 0.0
            while chosen is None or cost(probe, factor) < chosen[0]:
                value, passed = recall(probe)
                log.debug("tune: nprobe %d k-factor %.1f recall@%d %.4f", probe, factor, k, value)
                if value > best_seen[0] + 1e-3:
                    best_seen = (value, probe, factor)
                if passed:
                    reached, passing = True, value
                    break
                if probe >= nlist:
                    break
                low, probe = probe, min(nlist, probe * 2)
            if not reached:
                continue
            while probe - low > 1:  # the smallest passing nprobe in (low, probe]
                middle = (low + probe) // 2
                value, passed = recall(middle)
                if passed:
                    probe, passing = middle, value
                else:
                    low = middle
            if chosen is None or cost(probe, factor) < chosen[0]:
                chosen = (cost(probe, factor), probe, factor, passing)
        if chosen is None:
            recall_value, probe, factor = best_seen
            log.warning(
                "%s reaches recall@%d %.3f at most, below the target %.3f; using nprobe %d",
                spec.factory,
                k,
                recall_value,
                spec.recall_target,
                probe,
            )
        else:
            _, probe, factor, recall_value = chosen
        self.refine_k_factor = factor
        self.nprobe = probe
        return recall_value

    # ---- persistence --------------------------------------------------------------------

    def manifest(self) -> IndexManifest:
        """The manifest this index would be saved with (without file entries)."""
        return IndexManifest(
            encoder=self.encoder,
            dim=self.dim,
            metric=METRIC,
            factory=self.factory,
            count=len(self),
            nprobe=self._nprobe,
            refine_k_factor=self.refine_k_factor,
            settings_hash=self.settings_hash,
        )

    def save(self, directory: Path) -> IndexManifest:
        """Write the index to `directory` atomically (see index/index_store.py)."""
        writers: dict[str, Callable[[Path], None]] = {BASE_FILE: self._writer(self._base)}
        if self._refine is not None:
            writers[REFINE_FILE] = self._writer(self._refine)
        try:
            return index_store.write_index_dir(directory, self.manifest(), writers)
        except RuntimeError as e:
            raise VectorIndexError(f"cannot write index to {directory}: {e}") from e

    @staticmethod
    def _writer(index: Any) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            faiss.write_index(index, str(path))

        return write

    @staticmethod
    def exists(directory: Path) -> bool:
        """True when `directory` holds a saved index."""
        return index_store.index_exists(directory)

    @classmethod
    def load(
        cls,
        directory: Path,
        expected_encoder: str,
        expected_dim: int,
        *,
        device: str = "auto",
        search_threads: int = 0,
        verify: bool = True,
        gpu_clone: GpuClone = _default_gpu_clone,
    ) -> "VectorIndex":
        """Read the index in `directory`, refusing another encoder or dimension.

        Raises IndexMismatchError for a manifest of another encoder/dim and
        IndexUnreadableError for a missing or damaged index (`verify` checks sha256).
        """
        for attempt in range(3):
            manifest = index_store.read_manifest(directory)
            if manifest.encoder != expected_encoder or manifest.dim != expected_dim:
                raise IndexMismatchError(
                    f"index {directory} was built for encoder {manifest.encoder!r} "
                    f"(dim {manifest.dim}), not {expected_encoder!r} (dim {expected_dim}); "
                    "rebuild it with `vtr reindex`"
                )
            if manifest.metric != METRIC:
                raise IndexMismatchError(f"index {directory} uses metric {manifest.metric!r}")
            try:
                return cls._from_files(
                    directory, manifest, device, search_threads, verify, gpu_clone
                )
            except IndexUnreadableError:
                # A concurrent save may have replaced this version: retry on the new one.
                if (
                    attempt == 2
                    or index_store.read_manifest(directory).data_dir == manifest.data_dir
                ):
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _from_files(
        cls,
        directory: Path,
        manifest: IndexManifest,
        device: str,
        search_threads: int,
        verify: bool,
        gpu_clone: GpuClone,
    ) -> "VectorIndex":
        def read(name: str) -> Any:
            path = index_store.data_file(directory, manifest, name, verify=verify)
            try:
                return faiss.read_index(str(path))
            except RuntimeError as e:
                raise IndexUnreadableError(
                    f"index file {path} is damaged ({e}); rebuild it with `vtr reindex`"
                ) from e

        base = read(BASE_FILE)
        refine = read(REFINE_FILE) if REFINE_FILE in manifest.files else None
        counts = {base.ntotal, manifest.count} | ({refine.ntotal} if refine is not None else set())
        if len(counts) != 1 or base.d != manifest.dim:
            raise IndexUnreadableError(
                f"index {directory} holds {base.ntotal} vectors of dim {base.d}, manifest says "
                f"{manifest.count} of dim {manifest.dim}; rebuild it with `vtr reindex`"
            )
        return cls(
            base,
            refine,
            encoder=manifest.encoder,
            factory=manifest.factory,
            nprobe=manifest.nprobe,
            refine_k_factor=manifest.refine_k_factor,
            settings_hash=manifest.settings_hash,
            device=device,
            search_threads=search_threads,
            gpu_clone=gpu_clone,
        )


def _train(
    base: Any,
    refine: Any | None,
    data: np.ndarray,
    spec: IndexSpec,
    rng: np.random.Generator,
    *,
    use_gpu: bool,
) -> None:
    """Train `base` (and the re-ranking store) on a sample of `data` (n, dim)."""
    needs_training = not base.is_trained or (refine is not None and not refine.is_trained)
    if not needs_training:
        return
    n = len(data)
    size = min(n, spec.train_size or n)
    ivf: Any = faiss.try_extract_index_ivf(base)
    if ivf is not None and size < ivf.nlist:
        raise InputError(
            f"{spec.factory!r} needs at least {ivf.nlist} vectors to train, got {n}; "
            "use a smaller nlist or an exact index"
        )
    sample = data[np.sort(rng.choice(n, size=size, replace=False))] if size < n else data
    if ivf is not None and use_gpu:
        try:
            ivf.clustering_index = faiss.index_cpu_to_all_gpus(
                faiss.IndexFlat(base.d, ivf.metric_type)
            )
        except (RuntimeError, AttributeError) as e:
            log.warning("training %s on CPU: no GPU clustering (%s)", spec.factory, e)
    try:
        if not base.is_trained:
            base.train(sample)
        if refine is not None and not refine.is_trained:
            refine.train(sample)
    except RuntimeError as e:
        raise VectorIndexError(f"cannot train {spec.factory!r} on {size} vectors: {e}") from e
    if ivf is not None:
        ivf.clustering_index = None
