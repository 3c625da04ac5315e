"""MESM data: TEF, pooling, span normalisation, saliency sampling, vocabulary, batches."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import InputError
from localize.annotations import MomentQuery, load_qvhighlights
from localize.features import InMemoryFeatureSource
from localize.mesm.config import preset
from localize.mesm.data import (
    EncoderTextSource,
    MesmDataset,
    QidTextSource,
    WordVocab,
    add_tef,
    clip_range,
    clip_tokenizer,
    collate_groups,
    data_config,
    make_loader,
    pool_video,
    video_group,
    window_saliency,
)

DATA = Path(__file__).parent / "data"
TOKENIZE = clip_tokenizer()


def fake_text_encoder(width: int = 6, max_words_l: int = 32) -> EncoderTextSource:
    """Random token rows, one per BPE token plus SOT / EOT (as CLIP's text tower gives)."""

    def encode(text: str) -> np.ndarray:
        n = len(TOKENIZE(text)[: max_words_l - 2]) + 2
        seed = sum(map(ord, text))
        return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32) * 3

    return EncoderTextSource(encode)


def video_source(
    queries: list[MomentQuery], length: int = 75, width: int = 8
) -> InMemoryFeatureSource:
    rng = np.random.default_rng(0)
    return InMemoryFeatureSource(
        {q.vid: rng.standard_normal((length, width)).astype(np.float32) for q in queries}
    )


@pytest.fixture(scope="module")
def qvh() -> list[MomentQuery]:
    return load_qvhighlights(DATA / "qvh_train_excerpt.jsonl")[:12]


def test_tef_values() -> None:
    out = add_tef(np.zeros((4, 3), dtype=np.float32))
    assert out.shape == (4, 5)
    assert np.allclose(out[:, 3], [0, 0.25, 0.5, 0.75])
    assert np.allclose(out[:, 4], [0.25, 0.5, 0.75, 1.0])


def test_pool_video_by_hand() -> None:
    feats = np.arange(10, dtype=np.float32).reshape(5, 2)  # rows [0,1], [2,3], ... [8,9]
    # bounds round([0, 2.5, 5]) = [0, 2, 5] (half to even), clamped to 4 -> [0, 2, 4]
    pooled = pool_video(feats, 2)
    assert np.allclose(pooled, [[1.0, 2.0], [5.0, 6.0]])
    assert pool_video(feats, 5) is feats


def test_clip_range_and_window_saliency() -> None:
    assert clip_range((3.2, 7.9), 1.0, 10, 10) == (3, 7)
    assert clip_range((3.2, 70.0), 1.0, 10, 10) == (3, 9)  # end clamped to the video
    assert clip_range((100.0, 150.0), 1.0, 200, 100) == (50, 75)  # raw -> pooled rows
    rng = np.random.default_rng(0)
    label, pos, neg = window_saliency([(2, 4)], 8, 2, rng)
    assert label.tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert all(2 <= p <= 4 for p in pos) and len(set(pos)) == 2
    assert all(n < 2 or n > 4 for n in neg) and len(set(neg)) == 2
    label, pos, neg = window_saliency([(0, 3)], 4, 2, rng)  # whole video: no outside clip
    assert label.tolist() == [1, 1, 1, 1] and len(neg) == 2


def test_video_group_parses_qvhighlights_ids() -> None:
    assert video_group("j7rJstUseKg_360.0_510.0") == ("j7rJstUseKg", 360.0)
    assert video_group("-Oc6gSWB_HA_60.0_210.0") == ("-Oc6gSWB_HA", 60.0)
    assert video_group("AO8RW") == ("AO8RW", None)


def test_qvhighlights_item(qvh: list[MomentQuery]) -> None:
    cfg = data_config(preset("qvhighlights"), max_words_l=32)
    ds = MesmDataset(qvh, video_source(qvh, length=80), fake_text_encoder(), cfg, seed=0)
    q = next(q for q in qvh if q.qid == 10016)  # windows [[96, 114]], clips 48..56
    item = ds.item(q)
    assert item.video_feat.shape == (75, 10)  # truncated to max_v_l, TEF appended
    assert np.allclose(item.video_feat[:, -2], np.arange(75) / 75)
    assert np.allclose(item.windows_xx, [[96 / 150, 114 / 150]])
    sums = [sum(s) for s in q.saliency_scores]  # [8, 9, 6, 5, 8, 7, 6, 5, 7]
    assert item.saliency_label[48:57].tolist() == sums
    assert item.saliency_label[:48].sum() == 0 and item.saliency_label[57:].sum() == 0
    assert item.clip_mask[48:57].all() and item.clip_mask.sum() == 9
    assert item.pos_idx[0] == 49  # best summed score
    assert item.neg_idx[0] == 51  # worst summed score (first of the ties)
    assert 48 <= item.pos_idx[1] <= 56
    assert not 48 <= item.neg_idx[1] <= 56  # easy negative outside the relevant clips
    assert np.allclose(np.linalg.norm(item.words_feat, axis=1), 1.0, atol=1e-5)


def test_groups_follow_youtube_id_and_segment_order(qvh: list[MomentQuery]) -> None:
    cfg = data_config(preset("qvhighlights"))
    ds = MesmDataset(qvh, video_source(qvh), fake_text_encoder(), cfg)
    group = next(g for g in ds.groups if g[0].vid.startswith("j7rJstUseKg"))
    assert [q.vid for q in group] == [
        "j7rJstUseKg_60.0_210.0",
        "j7rJstUseKg_210.0_360.0",
        "j7rJstUseKg_360.0_510.0",
    ]
    assert sum(len(g) for g in ds.groups) == len(qvh)


def test_more_windows_than_max_are_subsampled() -> None:
    windows = [(float(2 * i), float(2 * i + 1)) for i in range(8)]
    q = MomentQuery(1, "a man walks", "v", 150.0, windows, [], [])
    cfg = data_config(preset("qvhighlights"))
    ds = MesmDataset([q], video_source([q]), fake_text_encoder(), cfg, seed=3)
    item = ds.item(q)
    assert item.windows_xx.shape == (5, 2)
    chosen = {(round(float(s) * 150, 3), round(float(e) * 150, 3)) for s, e in item.windows_xx}
    assert len(chosen) == 5 and chosen <= set(windows)


def test_collate_shapes_padding_and_targets(qvh: list[MomentQuery]) -> None:
    lengths = {q.vid: 40 + 5 * i for i, q in enumerate(qvh)}
    rng = np.random.default_rng(1)
    feats = {v: rng.standard_normal((n, 8)).astype(np.float32) for v, n in lengths.items()}
    tok = TOKENIZE
    vocab = WordVocab.from_texts([q.query for q in qvh], tok, size=20, max_words_l=32)
    cfg = data_config(preset("qvhighlights"), vocab_size=20)
    ds = MesmDataset(qvh, InMemoryFeatureSource(feats), fake_text_encoder(), cfg, vocab=vocab)
    batch = collate_groups([ds[0], ds[1]])
    n = len(ds[0]) + len(ds[1])
    longest = max(lengths[i.vid] for i in ds[0] + ds[1])
    assert batch.video_feat.shape == (n, longest, 10)
    assert batch.num_clips.tolist() == [len(ds[0]), len(ds[1])]
    assert batch.video_mask.sum(1).tolist() == [lengths[i.vid] for i in ds[0] + ds[1]]
    assert batch.video_feat[~batch.video_mask].abs().sum() == 0  # zero padding
    words_valid = batch.words_mask.sum(1)
    assert torch.all(batch.words_feat[~batch.words_mask] == 0)
    assert batch.targets.words_label is not None
    for row in range(n):
        k = int(words_valid[row])
        assert batch.targets.words_label[row, 0] == vocab.start
        assert batch.targets.words_label[row, k - 1] == vocab.end
        assert batch.words_weight[row, 0] == 0 and batch.words_weight[row, k - 1] == 0
        assert torch.all(batch.words_weight[row, 1 : k - 1] == 1)
        assert torch.all(batch.words_weight[row, k:] == 0)
        spans = batch.targets.span_targets[row]
        assert spans.shape[1] == 2 and torch.all((spans >= 0) & (spans <= 1))
    assert batch.targets.pos_idx.shape == (n, 2) and batch.targets.neg_idx.shape == (n, 2)
    assert torch.all(batch.clip_mask <= batch.video_mask)
    assert batch.duration_s.tolist() == [150.0] * n


def test_vocabulary_labels() -> None:
    texts = ["a man a dog", "a dog runs", "the cat"]
    vocab = WordVocab.from_texts(texts, TOKENIZE, size=2, max_words_l=32)
    a, dog, cat = TOKENIZE("a")[0], TOKENIZE("dog")[0], TOKENIZE("cat")[0]
    assert vocab.label(a) == 0 and vocab.label(dog) == 1  # counts 3 and 2
    assert vocab.label(cat) == vocab.unknown == 2
    assert (vocab.start, vocab.end, vocab.num_classes) == (3, 4, 5)
    assert vocab.known(a) and not vocab.known(cat)


def test_vocabulary_from_official_count_file(tmp_path: Path) -> None:
    path = tmp_path / "CLIP_tokenized_count.txt"
    path.write_text("320 9939\n269 6456\n530 3631\n")
    vocab = WordVocab.from_count_file(path, size=2)
    assert vocab.label(320) == 0 and vocab.label(269) == 1 and vocab.label(530) == 2
    path.write_text("x y\n")
    with pytest.raises(InputError, match=":1:"):
        WordVocab.from_count_file(path, size=2)


def test_unknown_mask_marks_out_of_vocabulary_tokens() -> None:
    q = MomentQuery(1, "a zebra", "v", 150.0, [(10.0, 20.0)], [], [])
    vocab = WordVocab.from_texts(["a a a"], TOKENIZE, size=1, max_words_l=32)
    ds = MesmDataset(
        [q],
        video_source([q]),
        fake_text_encoder(),
        data_config(preset("qvhighlights"), vocab_size=1),
        vocab=vocab,
    )
    words = ds.item(q).words
    assert words is not None
    assert words.unknown_mask.tolist() == [False, False, True, False]
    assert words.words_label.tolist() == [vocab.start, 0, vocab.unknown, vocab.end]


def test_charades_style_pools_and_normalises_by_duration() -> None:
    q = MomentQuery(0, "a person opens a door", "AO8RW", 30.0, [(6.0, 12.5)], [], [])
    cfg = data_config(preset("charades"), max_video_l=10)
    assert cfg.long_video == "pool" and cfg.span_norm == "duration"
    ds = MesmDataset([q], video_source([q], length=30), fake_text_encoder(max_words_l=16), cfg)
    item = ds.item(q)
    assert item.video_feat.shape == (10, 10)
    assert np.allclose(item.windows_xx, [[6.0 / 30, 12.5 / 30]])
    # raw clips 6..12 of 30 -> pooled rows 2..4 of 10
    assert item.saliency_label.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert len(item.pos_idx) == 2 and all(2 <= p <= 4 for p in item.pos_idx)


def test_queries_without_moments_are_skipped_and_none_left_is_an_error() -> None:
    good = MomentQuery(0, "a", "v", 30.0, [(1.0, 2.0)], [], [])
    late = MomentQuery(1, "b", "v", 30.0, [(40.0, 45.0)], [], [])  # starts past the end
    empty = MomentQuery(2, "c", "v", 30.0, [], [], [])
    cfg = data_config(preset("charades"))
    ds = MesmDataset([good, late, empty], video_source([good]), fake_text_encoder(), cfg)
    assert [q.qid for q in ds.queries] == [0]
    with pytest.raises(InputError, match="no query"):
        MesmDataset([empty], video_source([good]), fake_text_encoder(), cfg)


def test_text_features_cut_to_max_words(qvh: list[MomentQuery]) -> None:
    q = replace(qvh[0], qid="long")
    rows = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    text = QidTextSource(InMemoryFeatureSource({"long": rows}))
    cfg = data_config(preset("qvhighlights"), max_words_l=8)
    ds = MesmDataset([q], video_source([q]), text, cfg)
    assert ds.item(q).words_feat.shape == (8, 6)


def test_loader_is_deterministic_under_a_seed(qvh: list[MomentQuery]) -> None:
    cfg = data_config(preset("qvhighlights"), videos_per_batch=3)

    def run(seed: int) -> list[tuple[list[int | str], list[list[int]]]]:
        ds = MesmDataset(qvh, video_source(qvh), fake_text_encoder(), cfg, seed=seed)
        return [
            (b.qids, b.targets.neg_idx.tolist()) for b in make_loader(ds, shuffle=True, seed=seed)
        ]

    first, second, other = run(5), run(5), run(6)
    assert first == second
    assert first != other
    assert sorted(q for qids, _ in first for q in qids) == sorted(q.qid for q in qvh)
