"""Choice of FAISS index type for one collection level: `choose_index_spec`.

The choice follows the vector count, the dimension and a memory budget, as autofaiss
does (criteo/autofaiss; FAISS wiki "Guidelines to choose an index"):
- exact `Flat` while the collection is small (no training, recall 1);
- `IVF{nlist},Flat` up to `ivf_flat_max_vectors` when the float32 vectors fit the budget;
- `IVF{nlist},PQ{m}x4fs` (4-bit fast-scan product quantizer) past that, with a re-ranking
  store `Refine(SQfp16)` or `Refine(SQ8)` when it fits: the PQ scan proposes
  `refine_k_factor * k` candidates and their stored vectors re-rank them, which lifts
  recall@100 from about 0.6-0.7 (PQ alone, on bench/index.py's data) to the target; at a
  million vectors this is both smaller and faster than scanning float32 IVF lists.
`nprobe` is left to the build, which tunes it to `recall_target` (see vector_index.py).
A faiss factory string (`[index] factory`) overrides the choice; a trailing
`,Refine(<factory>)` or `,RFlat` names the re-ranking store. OPQ (`OPQ64_512,IVF...`)
works through the override; it is not chosen by default, as the re-ranking store already
restores recall and OPQ training is slow on CPU.

Run `python bench/index.py` for the measured trade-offs.
"""

import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import faiss

from engine.config import IndexSettings
from engine.errors import ConfigError, VectorIndexError

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "ivf_flat", "ivf_pq", "custom"]

# Training vectors per IVF centroid (faiss warns under 39) and per PQ sub-quantizer code.
TRAIN_PER_CENTROID = 40
MIN_TRAIN = 10_000
# Bytes per stored id: the id itself plus the id -> slot hash map of the re-ranking store.
_ID_BYTES = 8
_REFINE_ID_BYTES = 8 + 32
_REFINE_PATTERN = re.compile(r"^(?P<base>.+?),(?:Refine\((?P<refine>[^()]+)\)|(?P<rflat>RFlat))$")
_IVF_PATTERN = re.compile(r"(?:^|,)IVF(?P<nlist>\d+)")


@dataclass(frozen=True)
class IndexSpec:
    """How to build one index; recorded (as `factory`, `nprobe`) in its manifest."""

    factory: str  # faiss factory string, optionally ending in ",Refine(<factory>)" or ",RFlat"
    kind: IndexKind
    train_size: int = 0  # vectors sampled for training (0: the index needs none)
    nprobe: int | None = None  # IVF cells visited per query; None: tuned at build
    refine_k_factor: float = 4.0  # candidates re-ranked per wanted result (re-ranking only)
    recall_target: float = 0.95  # recall@recall_k that the build tunes nprobe to
    recall_k: int = 100
    tune_queries: int = 200  # sampled vectors used as tuning queries
    estimated_bytes: int = 0  # memory the index is expected to take at build size
    settings_hash: str = ""  # hash of the [index] settings the spec was chosen from

    @property
    def base_factory(self) -> str:
        """The factory string of the searched index, without the re-ranking store."""
        return split_refine(self.factory)[0]

    @property
    def refine_factory(self) -> str | None:
        """The factory string of the re-ranking store, or None."""
        return split_refine(self.factory)[1]

    @property
    def nlist(self) -> int | None:
        """The number of IVF cells named in the factory string, or None."""
        match = _IVF_PATTERN.search(self.base_factory)
        return int(match.group("nlist")) if match else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_refine(factory: str) -> tuple[str, str | None]:
    """`"IVF64,PQ8x4fs,Refine(SQfp16)"` -> `("IVF64,PQ8x4fs", "SQfp16")`; RFlat -> Flat."""
    match = _REFINE_PATTERN.match(factory.strip())
    if match is None:
        return factory.strip(), None
    return match.group("base"), "Flat" if match.group("rflat") else match.group("refine")


def settings_hash(settings: IndexSettings) -> str:
    """A short stable hash of the index settings, stored in manifests to spot changes."""
    blob = json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def choose_nlist(n: int) -> int:
    """IVF cells for `n` vectors: a power of two near 2*sqrt(n), >= 40 vectors per cell."""
    if n < 2 * TRAIN_PER_CENTROID:
        return 1
    target = 2.0 * math.sqrt(n)
    nlist = 2 ** round(math.log2(target))
    while nlist > 1 and nlist * TRAIN_PER_CENTROID > n:
        nlist //= 2
    return int(min(nlist, 1 << 16))


def _coarse(nlist: int) -> str:
    # Past ~16k cells an HNSW graph finds the nearest centroids faster than a flat scan.
    return f"IVF{nlist}_HNSW32" if nlist >= 16384 else f"IVF{nlist}"


def _train_size(n: int, nlist: int) -> int:
    return int(min(n, max(MIN_TRAIN, TRAIN_PER_CENTROID * nlist)))


def _pq_m(dim: int, max_bytes_per_vector: float) -> int | None:
    """Sub-quantizers of a 4-bit PQ (m/2 bytes a vector): the most that fit, <= dim/4."""
    for m in range(max(1, dim // 4), 0, -1):
        if dim % m == 0 and m % 2 == 0 and m / 2 <= max_bytes_per_vector:
            return m
    return None


def choose_index_spec(
    n: int,
    dim: int,
    memory_budget_bytes: int,
    *,
    exact_max_vectors: int = 50_000,
    ivf_flat_max_vectors: int = 200_000,
    recall_target: float = 0.95,
    recall_k: int = 100,
    tune_queries: int = 200,
    factory: str | None = None,
) -> IndexSpec:
    """The index for `n` vectors of `dim` floats under `memory_budget_bytes` (see module)."""
    if n < 0 or dim < 1 or memory_budget_bytes < 1:
        raise VectorIndexError(f"bad index size: n={n}, dim={dim}, budget={memory_budget_bytes}")
    common: dict[str, Any] = {
        "recall_target": recall_target,
        "recall_k": recall_k,
        "tune_queries": tune_queries,
    }
    if factory:
        return _custom_spec(factory, n, dim, common)
    flat_bytes = n * (4 * dim + _ID_BYTES)
    if n <= exact_max_vectors and flat_bytes <= memory_budget_bytes:
        return IndexSpec(factory="Flat", kind="flat", estimated_bytes=flat_bytes, **common)
    nlist = choose_nlist(n)
    coarse_bytes = nlist * dim * 4
    train = _train_size(n, nlist)
    ivf_flat_bytes = flat_bytes + coarse_bytes
    if n <= ivf_flat_max_vectors and ivf_flat_bytes <= memory_budget_bytes:
        return IndexSpec(
            factory=f"{_coarse(nlist)},Flat",
            kind="ivf_flat",
            train_size=train,
            estimated_bytes=ivf_flat_bytes,
            **common,
        )
    per_vector = (memory_budget_bytes - coarse_bytes) / max(n, 1) - _ID_BYTES
    for refine, refine_bytes in (("SQfp16", 2 * dim), ("SQ8", dim)):
        m = _pq_m(dim, min(dim / 8, per_vector - refine_bytes - _REFINE_ID_BYTES))
        if m is not None:
            codes = n * (m // 2 + _ID_BYTES + refine_bytes + _REFINE_ID_BYTES) + coarse_bytes
            return IndexSpec(
                factory=f"{_coarse(nlist)},PQ{m}x4fs,Refine({refine})",
                kind="ivf_pq",
                train_size=train,
                estimated_bytes=codes,
                **common,
            )
    m = _pq_m(dim, per_vector)
    if m is None:
        raise VectorIndexError(
            f"a memory budget of {memory_budget_bytes} bytes is too small for {n} vectors of "
            f"dim {dim}; raise [index] memory_budget_mb"
        )
    log.warning(
        "memory budget leaves no room to re-rank %d vectors: recall will be below target", n
    )
    return IndexSpec(
        factory=f"{_coarse(nlist)},PQ{m}x4fs",
        kind="ivf_pq",
        train_size=train,
        estimated_bytes=n * (m // 2 + _ID_BYTES) + coarse_bytes,
        **common,
    )


def _custom_spec(factory: str, n: int, dim: int, common: dict[str, Any]) -> IndexSpec:
    base, refine = split_refine(factory)
    for part in (base, refine):
        if part is None:
            continue
        try:
            faiss.index_factory(dim, part, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid faiss factory string {factory!r}: {e}") from e
    match = _IVF_PATTERN.search(base)
    train = _train_size(n, int(match.group("nlist"))) if match else min(n, MIN_TRAIN * 10)
    return IndexSpec(factory=factory.strip(), kind="custom", train_size=train, **common)


def spec_from_settings(n: int, dim: int, settings: IndexSettings) -> IndexSpec:
    """`choose_index_spec` with the `[index]` settings, carrying their hash."""
    spec = choose_index_spec(
        n,
        dim,
        settings.memory_budget_mb * 1024 * 1024,
        exact_max_vectors=settings.exact_max_vectors,
        ivf_flat_max_vectors=settings.ivf_flat_max_vectors,
        recall_target=settings.recall_target,
        recall_k=settings.recall_k,
        tune_queries=settings.tune_queries,
        factory=settings.factory or None,
    )
    return replace(spec, settings_hash=settings_hash(settings))
