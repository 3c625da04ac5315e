"""choose_index_spec: exact while small, IVF-Flat when it fits, PQ + re-ranking past the
memory budget, and the factory-string override."""

import pytest

from engine.config import IndexSettings
from engine.errors import ConfigError, VectorIndexError
from index.index_factory import (
    choose_index_spec,
    choose_nlist,
    settings_hash,
    spec_from_settings,
    split_refine,
)

MIB = 1024 * 1024


def test_small_collections_are_exact() -> None:
    spec = choose_index_spec(0, 512, 2048 * MIB)
    assert (spec.factory, spec.kind, spec.train_size) == ("Flat", "flat", 0)
    assert choose_index_spec(50_000, 512, 2048 * MIB).kind == "flat"


def test_medium_collections_use_ivf_flat_while_it_fits() -> None:
    spec = choose_index_spec(100_000, 512, 2048 * MIB)
    assert spec.kind == "ivf_flat" and spec.factory == "IVF512,Flat"
    assert spec.nlist == 512 and spec.nprobe is None  # tuned at build
    assert spec.train_size == 512 * 40
    assert spec.estimated_bytes <= 2048 * MIB
    assert choose_index_spec(100_000, 512, 100 * MIB).kind == "ivf_pq"  # over budget
    assert choose_index_spec(300_000, 512, 1 << 40).kind == "ivf_pq"  # past ivf_flat_max


def test_large_collections_use_pq_with_the_richest_refine_that_fits() -> None:
    n, dim = 1_000_000, 512
    fp16 = choose_index_spec(n, dim, 2048 * MIB)
    assert fp16.factory == "IVF2048,PQ128x4fs,Refine(SQfp16)" and fp16.kind == "ivf_pq"
    assert fp16.estimated_bytes < 0.6 * n * dim * 4  # about half the float32 size
    sq8 = choose_index_spec(n, dim, 1024 * MIB)
    assert sq8.refine_factory == "SQ8" and sq8.estimated_bytes <= 1024 * MIB
    bare = choose_index_spec(n, dim, 200 * MIB)
    assert bare.refine_factory is None and bare.base_factory.startswith("IVF2048,PQ")
    assert bare.estimated_bytes <= 200 * MIB
    with pytest.raises(VectorIndexError, match="too small"):
        choose_index_spec(n, dim, 4 * MIB)


def test_huge_nlist_uses_an_hnsw_coarse_quantizer() -> None:
    spec = choose_index_spec(100_000_000, 512, 1 << 40)
    assert spec.factory.startswith("IVF16384_HNSW32,")


@pytest.mark.parametrize(("n", "nlist"), [(10, 1), (3000, 64), (100_000, 512), (10**6, 2048)])
def test_nlist_grows_with_sqrt_n_and_keeps_enough_training_points(n: int, nlist: int) -> None:
    assert choose_nlist(n) == nlist
    assert nlist == 1 or n >= 40 * nlist


def test_factory_override_is_honoured_and_validated() -> None:
    spec = choose_index_spec(10**6, 64, MIB, factory="IVF256,PQ16x4fs,Refine(SQ8)")
    assert spec.kind == "custom" and spec.factory == "IVF256,PQ16x4fs,Refine(SQ8)"
    assert (spec.base_factory, spec.refine_factory, spec.nlist) == ("IVF256,PQ16x4fs", "SQ8", 256)
    assert split_refine("IVF8,PQ4,RFlat") == ("IVF8,PQ4", "Flat")
    assert split_refine("HNSW32") == ("HNSW32", None)
    with pytest.raises(ConfigError, match="invalid faiss factory"):
        choose_index_spec(1000, 64, MIB, factory="IVF8,Bogus12")


def test_spec_from_settings_carries_the_settings_hash() -> None:
    settings = IndexSettings(factory="IVF8,Flat", recall_target=0.9)
    spec = spec_from_settings(5000, 32, settings)
    assert spec.factory == "IVF8,Flat" and spec.recall_target == 0.9
    assert spec.settings_hash == settings_hash(settings) != settings_hash(IndexSettings())
    assert spec_from_settings(10, 32, IndexSettings()).factory == "Flat"
