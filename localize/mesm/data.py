"""MESM training data: annotations + clip features + token features -> model batches.

Builds what the official MESM data loaders build (github lntzm/MESM, `dataset/base.py`,
`dataset/qvhighlights.py`, `dataset/charades.py`), from vtr's `MomentQuery` annotations,
a video `FeatureSource` and a `TextFeatureSource`:

- Video: the source's (T, D) rows (sources L2-normalise per extractor), longer videos
  cut to `max_video_l` ("truncate", QVHighlights) or mean-pooled down to it ("pool",
  Charades-STA: `max_video_l + 1` rounded boundaries, each row the mean of its segment),
  then 2 TEF dims [t / T, t / T + 1 / T] appended. Padded to the batch's longest video.
- Spans: up to `max_windows` ground-truth windows (randomly chosen when there are more),
  normalised by `T * clip_len_s` ("clips", QVHighlights) or by the duration
  ("duration", Charades-STA), clamped to [0, 1], as (centre, width).
- Saliency: with QVHighlights clip scores, the label of each clip is the sum of its 3
  annotators' scores (0..12); triplet pairs are [hard, easy] positives (best-scored and a
  random relevant clip) and [hard, easy] negatives (worst-scored relevant clip and a
  random irrelevant one; the hard pair again when every clip is relevant). Without clip
  scores (Charades-STA) the GT clips `int(start / clip_len) .. int(end / clip_len)` get
  label 1 and `contra_samples` positives / negatives are drawn inside / outside them.
  `clip_mask` (the GT clips for FW-MESM and rec_ss) marks label > 0, or the windows'
  clips when no labelled clip survives (all scores 0, or clips cut off by truncation).
- Text: the query's token features (SOT ... EOT, after CLIP's `ln_final`), cut to
  `max_words_l` rows and L2-normalised per token.
- Word reconstruction (FW-MESM): the query's CLIP BPE ids (open_clip's tokenizer, the
  same BPE as OpenAI CLIP), `[SOT] + ids[: max_words_l - 2] + [EOT]`; labels are the
  rank of the id among the `vocab_size` most frequent training ids (`vocab_size` for
  any other id, `vocab_size + 1` SOT, `vocab_size + 2` EOT); `unknown_mask` marks ids
  outside the vocabulary. The official code weights masking by part of speech (2 for
  nouns, verbs, adjectives and adverbs, 1 otherwise) with NLTK's tagger; vtr ships no
  POS tagger, so every non-special token gets weight 1 (SOT, EOT, padding 0): masking
  then picks uniformly among the words.
- Batching: all queries of one video form one item; QVHighlights ids
  `{youtube_id}_{start}_{end}` group by YouTube id as the official loader does; items are
  sorted by segment start (else by moment start). A batch holds `videos_per_batch` (12)
  items, so a batch has N queries from G videos and `num_clips` (G,) says how many each.

Randomness (window choice, clip sampling) comes from the dataset's own seeded generator
and the loader's seeded shuffle, so a run is reproducible.

    ds = MesmDataset(queries, video_source, text_source, data_config(preset("qvhighlights")), vocab)
    for batch in make_loader(ds, shuffle=True, seed=0): batch.video_feat  # (N, L, D + 2)
"""

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engine.errors import InputError, NotFoundError
from localize.annotations import MomentQuery
from localize.features import FeatureSource, l2_normalize_rows
from localize.mesm.config import MesmConfig
from localize.mesm.losses import MesmTargets
from localize.mesm.matcher import span_xx_to_cxw

log = logging.getLogger(__name__)

Tokenize = Callable[[str], list[int]]  # text -> BPE ids, no SOT / EOT


@dataclass(frozen=True)
class DataConfig:
    """How annotations and features become model inputs (official names in comments)."""

    max_video_l: int = 75  # max_video_l (clips)
    max_words_l: int = 32  # max_words_l (tokens incl. SOT / EOT)
    clip_len_s: float = 2.0  # clip_len (seconds per feature row)
    long_video: Literal["truncate", "pool"] = "truncate"
    span_norm: Literal["clips", "duration"] = "clips"
    max_windows: int = 5  # max_windows
    use_tef: bool = True  # use_tef
    vocab_size: int = 5000  # vocab_size (word reconstruction)
    contra_samples: int = 2  # contra_samples (positives / negatives without clip scores)
    videos_per_batch: int = 12  # batch_size (videos, each with all its queries)
    eval_videos_per_batch: int = 30  # eval_batch_size

    def __post_init__(self) -> None:
        if self.max_video_l < 1 or self.max_words_l < 2:
            raise InputError("DataConfig: max_video_l >= 1 and max_words_l >= 2 required")
        if self.clip_len_s <= 0:
            raise InputError(f"DataConfig: clip_len_s must be > 0, got {self.clip_len_s}")
        if self.videos_per_batch < 1 or self.eval_videos_per_batch < 1:
            raise InputError("DataConfig: videos per batch must be >= 1")


DatasetStyle = Literal["qvhighlights", "charades"]

# How each dataset family treats long videos and normalises spans (official loaders).
STYLE_SETTINGS: dict[str, dict[str, Any]] = {
    "qvhighlights": {"long_video": "truncate", "span_norm": "clips"},
    "charades": {"long_video": "pool", "span_norm": "duration"},
}


def dataset_style(model_config: MesmConfig) -> DatasetStyle:
    """The data handling a model preset implies: Charades-STA presets pool, others truncate."""
    return "charades" if model_config.name.startswith("charades") else "qvhighlights"


def data_config(
    model_config: MesmConfig, style: DatasetStyle | None = None, **overrides: Any
) -> DataConfig:
    """Data settings matching `model_config` (lengths, vocabulary, clip length, TEF)."""
    chosen = style or dataset_style(model_config)
    if chosen not in STYLE_SETTINGS:
        raise InputError(f"unknown dataset style '{chosen}'; known: {', '.join(STYLE_SETTINGS)}")
    values: dict[str, Any] = {
        "max_video_l": model_config.max_v_l,
        "max_words_l": model_config.max_q_l,
        "clip_len_s": model_config.clip_seconds,
        "use_tef": model_config.use_tef,
        "vocab_size": model_config.vocab_size,
        **STYLE_SETTINGS[chosen],
    }
    values.update(overrides)
    return DataConfig(**values)


# ---------------------------------------------------------------------------- text sources


class TextFeatureSource(Protocol):
    """Token features of a query: `get(query)` -> (L, W) float32, SOT ... EOT rows."""

    def get(self, query: MomentQuery) -> np.ndarray: ...


class QidTextSource:
    """Precomputed token features looked up by qid in any `FeatureSource`.

    Moment-DETR's layout is `NpzDirFeatureSource(dir, key="last_hidden_state",
    filename="qid{}.npz")`; an HDF5 file keyed by qid or an in-memory dict work too.
    """

    def __init__(self, source: FeatureSource):
        self.source = source

    def get(self, query: MomentQuery) -> np.ndarray:
        return self.source.get(str(query.qid))


class EncoderTextSource:
    """Token features computed by `encode(text)` -> (L, W), cached per distinct text."""

    def __init__(self, encode: Callable[[str], np.ndarray]):
        self.encode = encode
        self._cache: dict[str, np.ndarray] = {}

    def get(self, query: MomentQuery) -> np.ndarray:
        if query.query not in self._cache:
            self._cache[query.query] = np.asarray(self.encode(query.query), dtype=np.float32)
        return self._cache[query.query]


# ------------------------------------------------------------------------------ vocabulary


def clip_tokenizer() -> Tokenize:
    """open_clip's BPE tokenizer (OpenAI CLIP's vocabulary, shipped inside the package)."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    return lambda text: list(tokenizer.encode(text))


@dataclass(frozen=True)
class WordVocab:
    """The `size` most frequent BPE ids -> reconstruction labels 0..size-1, plus 3 specials."""

    ranked_ids: tuple[int, ...]
    size: int
    _label: Mapping[int, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InputError(f"WordVocab: size must be >= 1, got {self.size}")
        object.__setattr__(
            self, "_label", {tid: i for i, tid in enumerate(self.ranked_ids[: self.size])}
        )

    @property
    def unknown(self) -> int:
        return self.size

    @property
    def start(self) -> int:
        return self.size + 1

    @property
    def end(self) -> int:
        return self.size + 2

    @property
    def num_classes(self) -> int:
        """Width of the reconstruction head's output: size + unknown / start / end."""
        return self.size + 3

    def label(self, token_id: int) -> int:
        return self._label.get(token_id, self.unknown)

    def known(self, token_id: int) -> bool:
        return token_id in self._label

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], tokenize: Tokenize, size: int, max_words_l: int
    ) -> "WordVocab":
        """Count the ids of `texts` (each cut to max_words_l - 2) and keep the top `size`.

        Ties keep first-seen order, as the official count file's stable sort does.
        """
        counts: Counter[int] = Counter()
        for text in texts:
            counts.update(tokenize(text)[: max_words_l - 2])
        ranked = sorted(counts, key=lambda tid: -counts[tid])  # stable: first seen wins ties
        return cls(tuple(ranked), size)

    @classmethod
    def from_count_file(cls, path: Path, size: int) -> "WordVocab":
        """The official `CLIP_tokenized_count.txt` ("<token id> <count>" lines, best first)."""
        if not path.is_file():
            raise NotFoundError(f"vocabulary count file not found: {path}")
        ids = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                ids.append(int(line.split()[0]))
            except ValueError as e:
                raise InputError(f"{path}:{number}: expected '<token id> <count>'") from e
        return cls(tuple(ids), size)


# ------------------------------------------------------------------------ per-query pieces


def add_tef(video_feat: np.ndarray) -> np.ndarray:
    """Append [t / T, t / T + 1 / T] to each of the T rows: (T, D) -> (T, D + 2)."""
    length = video_feat.shape[0]
    start = np.arange(length, dtype=np.float32) / length  # (T,)
    tef = np.stack([start, start + 1.0 / length], axis=1)  # (T, 2)
    return np.concatenate([video_feat, tef], axis=1).astype(np.float32)


def pool_video(video_feat: np.ndarray, max_len: int) -> np.ndarray:
    """Mean-pool (T, D) down to (max_len, D) as the official loader; shorter input unchanged."""
    length = video_feat.shape[0]
    if length <= max_len:
        return video_feat
    bounds = np.round(np.arange(max_len + 1, dtype=np.float64) / max_len * length).astype(int)
    bounds = np.minimum(bounds, length - 1)  # official clamp (the last row only ever starts)
    rows = []
    for i in range(max_len):
        s, e = bounds[i], bounds[i + 1]
        rows.append(video_feat[s:e].mean(axis=0) if s < e else video_feat[s])
    return np.stack(rows).astype(np.float32)  # (max_len, D)


def fit_video(video_feat: np.ndarray, config: DataConfig) -> np.ndarray:
    """Apply the long-video policy: truncate or mean-pool to `max_video_l` rows."""
    if config.long_video == "truncate":
        return video_feat[: config.max_video_l]
    return pool_video(video_feat, config.max_video_l)


def normalised_windows(
    windows: Sequence[tuple[float, float]],
    norm_s: float,
    config: DataConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to `max_windows` windows (random subset when more), / norm_s, clamped: (n, 2) xx."""
    chosen = list(windows)
    if len(chosen) > config.max_windows:
        order = rng.permutation(len(chosen))[: config.max_windows]
        chosen = [chosen[i] for i in order]
    xx = np.asarray(chosen, dtype=np.float32).reshape(-1, 2) / np.float32(norm_s)
    return np.clip(xx, 0.0, 1.0)


def qvh_saliency(
    rel_clip_ids: Sequence[int],
    scores: Sequence[Sequence[int]],
    ctx_l: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[int], list[int]]:
    """Summed-score labels (ctx_l,) and [hard, easy] positive / negative clip indices.

    Relevant clips beyond the (truncated) video are dropped from the labels.
    """
    agg = np.asarray([sum(s) for s in scores], dtype=np.float32)  # (#rel,)
    label = np.zeros(ctx_l, dtype=np.float32)
    for cid, score in zip(rel_clip_ids, agg, strict=True):
        if 0 <= cid < ctx_l:
            label[cid] = score
    order = np.argsort(agg, kind="stable")  # increasing score
    hard_pos = [min(rel_clip_ids[order[-1]], ctx_l - 1)]
    hard_neg = [min(rel_clip_ids[order[0]], ctx_l - 1)]
    easy_pool = sorted(set(range(ctx_l)) - set(rel_clip_ids))
    if easy_pool:
        easy_pos = [min(int(rng.choice(np.asarray(rel_clip_ids))), ctx_l - 1)]
        easy_neg = [int(rng.choice(np.asarray(easy_pool)))]
    else:
        easy_pos, easy_neg = hard_pos, hard_neg
    return label, hard_pos + easy_pos, hard_neg + easy_neg


def window_saliency(
    clip_ranges: Sequence[tuple[int, int]], ctx_l: int, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[int], list[int]]:
    """0/1 labels over the GT clip ranges (inclusive) and sampled positives / negatives."""
    label = np.zeros(ctx_l, dtype=np.float32)
    for s, e in clip_ranges:
        label[s : e + 1] = 1.0
    pos_pool = np.flatnonzero(label > 0)
    neg_pool = np.flatnonzero(label == 0)
    if neg_pool.size == 0:  # the moment covers the whole video: no negative exists
        neg_pool = np.arange(ctx_l)
    pos = rng.choice(pos_pool, samples, replace=pos_pool.size < samples)
    neg = rng.choice(neg_pool, samples, replace=neg_pool.size < samples)
    return label, [int(i) for i in pos], [int(i) for i in neg]


def clip_range(
    window_s: tuple[float, float], clip_len_s: float, raw_len: int, ctx_l: int
) -> tuple[int, int]:
    """Inclusive clip indices of a window in the (possibly pooled) ctx_l-row timeline.

    The official loader takes `int(t / clip_len)` on the raw timeline; after pooling
    (raw_len > ctx_l) the raw index is mapped onto the pooled rows.
    """
    start, end = int(window_s[0] / clip_len_s), int(window_s[1] / clip_len_s)
    if raw_len > ctx_l:
        start, end = start * ctx_l // raw_len, end * ctx_l // raw_len
    end = min(end, ctx_l - 1)
    return min(start, end), end


@dataclass(frozen=True)
class WordTargets:
    words_weight: np.ndarray  # (Lw,) float32: 0 SOT / EOT, 1 words
    unknown_mask: np.ndarray  # (Lw,) bool
    words_label: np.ndarray  # (Lw,) int64


def word_targets(
    text: str, n_rows: int, tokenize: Tokenize, vocab: WordVocab, max_words_l: int
) -> WordTargets:
    """Reconstruction targets for `n_rows` token rows of `text` (SOT ... EOT)."""
    ids = tokenize(text)[: max_words_l - 2]
    labels = [vocab.start] + [vocab.label(t) for t in ids] + [vocab.end]
    unknown = [False] + [not vocab.known(t) for t in ids] + [False]
    weight = [0.0] + [1.0] * len(ids) + [0.0]
    if len(labels) != n_rows:
        log.debug("query %r: %d BPE tokens but %d feature rows", text, len(labels), n_rows)
        labels, unknown, weight = labels[:n_rows], unknown[:n_rows], weight[:n_rows]
        pad = n_rows - len(labels)
        labels += [vocab.end] * pad
        unknown += [False] * pad
        weight += [0.0] * pad
    return WordTargets(
        np.asarray(weight, dtype=np.float32),
        np.asarray(unknown, dtype=bool),
        np.asarray(labels, dtype=np.int64),
    )


# ------------------------------------------------------------------------------- dataset

_SEGMENT_ID = re.compile(r"^(?P<video>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


def video_group(vid: str) -> tuple[str, float | None]:
    """(group key, segment start): QVHighlights `{yt}_{st}_{ed}` -> (yt, st), else (vid, None)."""
    match = _SEGMENT_ID.match(vid)
    if match is None:
        return vid, None
    return match.group("video"), float(match.group("start"))


@dataclass
class QueryItem:
    """One query, ready to batch."""

    qid: int | str
    vid: str
    query: str
    duration_s: float
    video_feat: np.ndarray  # (T, Dv [+ 2]) float32
    words_feat: np.ndarray  # (Lw, Dt) float32, rows L2-normalised
    windows_xx: np.ndarray  # (n, 2) normalised (start, end)
    saliency_label: np.ndarray  # (T,) float32
    clip_mask: np.ndarray  # (T,) bool ground-truth clips (never empty)
    pos_idx: list[int]
    neg_idx: list[int]
    words: WordTargets | None


class MesmDataset(Dataset[list[QueryItem]]):
    """Items are videos (groups of queries); `collate_groups` turns a list of them into a batch."""

    def __init__(
        self,
        queries: Sequence[MomentQuery],
        video_source: FeatureSource,
        text_source: TextFeatureSource,
        config: DataConfig,
        vocab: WordVocab | None = None,
        tokenize: Tokenize | None = None,
        seed: int = 0,
    ):
        self.video_source = video_source
        self.text_source = text_source
        self.config = config
        self.vocab = vocab
        self.tokenize = tokenize if tokenize is not None or vocab is None else clip_tokenizer()
        self.rng = np.random.default_rng(seed)
        usable = [q for q in queries if self._usable(q)]
        if len(usable) < len(queries):
            log.info(
                "skipped %d of %d queries without a usable moment",
                len(queries) - len(usable),
                len(queries),
            )
        if not usable:
            raise InputError("no query with a ground-truth moment to train or evaluate on")
        self.queries = usable
        groups: dict[str, list[MomentQuery]] = defaultdict(list)
        for q in usable:
            groups[video_group(q.vid)[0]].append(q)
        self.groups = [sorted(g, key=self._sort_key) for g in groups.values()]

    def _usable(self, q: MomentQuery) -> bool:
        if not q.windows:
            return False
        if self.config.span_norm == "duration" and q.duration_s is not None:
            return min(s for s, _ in q.windows) <= q.duration_s  # official: start past the end
        return True

    @staticmethod
    def _sort_key(q: MomentQuery) -> float:
        segment_start = video_group(q.vid)[1]
        return segment_start if segment_start is not None else min(s for s, _ in q.windows)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> list[QueryItem]:
        return [self.item(q) for q in self.groups[index]]

    def item(self, q: MomentQuery) -> QueryItem:
        cfg = self.config
        raw = self.video_source.get(q.vid)  # (T_raw, Dv)
        if raw.shape[0] == 0:
            raise InputError(f"video '{q.vid}' has no feature rows")
        video = fit_video(raw, cfg)  # (T, Dv)
        ctx_l = video.shape[0]
        if cfg.use_tef:
            video = add_tef(video)  # (T, Dv + 2)
        duration_s = q.duration_s if q.duration_s is not None else raw.shape[0] * cfg.clip_len_s
        windows = [(s, min(e, duration_s)) for s, e in q.windows]
        norm_s = ctx_l * cfg.clip_len_s if cfg.span_norm == "clips" else duration_s
        windows_xx = normalised_windows(windows, norm_s, cfg, self.rng)  # (n, 2)
        ranges = [clip_range(w, cfg.clip_len_s, raw.shape[0], ctx_l) for w in windows]
        if q.relevant_clip_ids and q.saliency_scores:
            label, pos, neg = qvh_saliency(q.relevant_clip_ids, q.saliency_scores, ctx_l, self.rng)
            clip_mask = label > 0
            if not clip_mask.any():  # all scores 0, or clips cut off: use the windows
                clip_mask = window_saliency(ranges, ctx_l, 1, self.rng)[0] > 0
        else:
            label, pos, neg = window_saliency(ranges, ctx_l, cfg.contra_samples, self.rng)
            clip_mask = label > 0
        words = self.text_source.get(q)[: cfg.max_words_l]  # (Lw, Dt)
        if words.ndim != 2 or words.shape[0] == 0:
            raise InputError(f"query {q.qid!r}: token features of shape {words.shape}")
        words = l2_normalize_rows(np.asarray(words, dtype=np.float32))
        targets = None
        if self.vocab is not None and self.tokenize is not None:
            targets = word_targets(
                q.query, words.shape[0], self.tokenize, self.vocab, cfg.max_words_l
            )
        return QueryItem(
            qid=q.qid,
            vid=q.vid,
            query=q.query,
            duration_s=float(duration_s),
            video_feat=video,
            words_feat=words,
            windows_xx=windows_xx,
            saliency_label=label,
            clip_mask=clip_mask,
            pos_idx=pos,
            neg_idx=neg,
            words=targets,
        )


# -------------------------------------------------------------------------------- batches


@dataclass
class MesmBatch:
    """N queries of G videos, padded; `targets` holds what the losses need."""

    video_feat: torch.Tensor  # (N, L, Dv) float32
    video_mask: torch.Tensor  # (N, L) bool
    words_feat: torch.Tensor  # (N, Lw, Dt) float32, padding rows zero
    words_mask: torch.Tensor  # (N, Lw) bool
    words_weight: torch.Tensor  # (N, Lw) float32 masking weights (0 for SOT / EOT / pad)
    unknown_mask: torch.Tensor  # (N, Lw) bool, ids outside the vocabulary
    num_clips: torch.Tensor  # (G,) int64 queries per video
    duration_s: torch.Tensor  # (N,) float32
    targets: MesmTargets
    qids: list[int | str]
    vids: list[str]
    queries: list[str]

    @property
    def clip_mask(self) -> torch.Tensor:
        return self.targets.clip_mask  # (N, L) bool

    def to(self, device: torch.device | str) -> "MesmBatch":
        return MesmBatch(
            video_feat=self.video_feat.to(device),
            video_mask=self.video_mask.to(device),
            words_feat=self.words_feat.to(device),
            words_mask=self.words_mask.to(device),
            words_weight=self.words_weight.to(device),
            unknown_mask=self.unknown_mask.to(device),
            num_clips=self.num_clips.to(device),
            duration_s=self.duration_s.to(device),
            targets=self.targets.to(device),
            qids=self.qids,
            vids=self.vids,
            queries=self.queries,
        )


def _pad(arrays: Sequence[np.ndarray], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (len_i, ...) arrays into (N, max_len, ...) zeros-padded plus a (N, max_len) mask."""
    length = max(a.shape[0] for a in arrays)
    out = torch.zeros((len(arrays), length, *arrays[0].shape[1:]), dtype=dtype)
    mask = torch.zeros((len(arrays), length), dtype=torch.bool)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = torch.as_tensor(a, dtype=dtype)
        mask[i, : a.shape[0]] = True
    return out, mask


def collate_groups(groups: Sequence[Sequence[QueryItem]]) -> MesmBatch:
    """Flatten G videos' queries into one padded batch (videos in order, queries in order)."""
    items = [item for group in groups for item in group]
    if not items:
        raise InputError("cannot collate an empty batch")
    video_feat, video_mask = _pad([i.video_feat for i in items], torch.float32)
    words_feat, words_mask = _pad([i.words_feat for i in items], torch.float32)
    saliency_label, _ = _pad([i.saliency_label for i in items], torch.float32)
    clip_mask, _ = _pad([i.clip_mask for i in items], torch.bool)
    lw = words_feat.shape[1]
    weight = torch.zeros(len(items), lw)
    unknown = torch.zeros(len(items), lw, dtype=torch.bool)
    labels: torch.Tensor | None = None
    word_list = [i.words for i in items if i.words is not None]
    if len(word_list) == len(items):
        labels = torch.zeros(len(items), lw, dtype=torch.int64)
        for n, words in enumerate(word_list):
            k = words.words_label.shape[0]
            weight[n, :k] = torch.from_numpy(words.words_weight)
            unknown[n, :k] = torch.from_numpy(words.unknown_mask)
            labels[n, :k] = torch.from_numpy(words.words_label)
    else:  # no vocabulary: masking weights still follow the token layout
        for n, i in enumerate(items):
            k = i.words_feat.shape[0]
            weight[n, 1 : k - 1] = 1.0
    spans = [span_xx_to_cxw(torch.from_numpy(i.windows_xx)) for i in items]
    targets = MesmTargets(
        span_targets=spans,
        video_mask=video_mask,
        saliency_label=saliency_label,
        clip_mask=clip_mask,
        pos_idx=torch.tensor([i.pos_idx for i in items], dtype=torch.int64),
        neg_idx=torch.tensor([i.neg_idx for i in items], dtype=torch.int64),
        num_clips=torch.tensor([len(g) for g in groups if len(g) > 0], dtype=torch.int64),
        words_label=labels,
    )
    return MesmBatch(
        video_feat=video_feat,
        video_mask=video_mask,
        words_feat=words_feat,
        words_mask=words_mask,
        words_weight=weight,
        unknown_mask=unknown,
        num_clips=targets.num_clips,
        duration_s=torch.tensor([i.duration_s for i in items], dtype=torch.float32),
        targets=targets,
        qids=[i.qid for i in items],
        vids=[i.vid for i in items],
        queries=[i.query for i in items],
    )


def make_loader(
    dataset: MesmDataset,
    shuffle: bool,
    seed: int = 0,
    videos_per_batch: int | None = None,
) -> DataLoader[Any]:
    """Batches of `videos_per_batch` videos (default: the config's training size)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=videos_per_batch or dataset.config.videos_per_batch,
        shuffle=shuffle,
        generator=generator,
        collate_fn=collate_groups,
        num_workers=0,
    )
