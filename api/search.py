"""The search service: one query in, ranked moments out. Used by `vtr search` and the API.

Flow: text -> encoder (sentence embedding + token features) -> stage 1 (per-level FAISS
search, fused per video; index/stage1.py) -> the `candidates` best videos' clip
features from the feature store -> stage 2 localizer (batched, long videos windowed)
-> moments. A moment's final score is

    final = stage1_weight * stage1 + (1 - stage1_weight) * stage2

where stage1 is the video's fused stage-1 score and stage2 the localizer's moment score.
With `SearchRequest.stage2 = False` no localizer runs: a candidate's moments are its best
action/entity segments from stage 1, their cosine in place of the stage-2 score (to
measure what stage 2 adds).
Results are moments (default) or videos with their moments, with catalog metadata,
per-level scores, per-stage timings and an opaque token for the next page. Models and
indexes load once per service and are reused across queries (thread-safe).
"""

import base64
import binascii
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.config import Settings
from engine.encoders import Encoder, create_encoder
from engine.errors import InputError
from engine.feature_store import FeatureStore
from index.catalog import Catalog, CollectionRecord, VideoRecord
from index.collection_index import CollectionIndexes, features_dir, indexes_dir
from index.levels import action_span_embedder, strategy_for_encoder
from index.stage1 import Candidate, FusionParams, SearchFilters, search_candidates
from localize.postprocess import nms
from localize.registry import LocalizerOptions, create_localizer
from localize.types import Localizer, Moment, QueryText, VideoClips, VideoMoments

log = logging.getLogger(__name__)

GroupBy = Literal["moment", "video"]
MAX_QUERY_TOKENS = 32  # MESM's QVHighlights text length (SOT + 30 BPE + EOT)


@dataclass(frozen=True)
class SearchRequest:
    query: str
    collection: str | None = None
    top_k: int | None = None
    group_by: GroupBy = "moment"
    filters: SearchFilters = field(default_factory=SearchFilters)
    page_token: str | None = None
    debug: bool = False
    stage2: bool = True  # False: stage-1 segments as moments, no localizer


@dataclass(frozen=True)
class MomentResult:
    video_id: int
    uri: str
    title: str
    start_s: float
    end_s: float
    score: float  # final
    stage1_score: float
    stage2_score: float
    level_scores: dict[str, float]
    duration_s: float | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class VideoResult:
    video_id: int
    uri: str
    title: str
    score: float  # its best moment's final score
    stage1_score: float
    level_scores: dict[str, float]
    duration_s: float | None
    metadata: dict[str, Any]
    moments: list[MomentResult]


@dataclass(frozen=True)
class SearchResponse:
    query: str
    collection: str
    group_by: GroupBy
    results: list[MomentResult] | list[VideoResult]
    next_page_token: str | None
    timings_ms: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def title_of(video: VideoRecord) -> str:
    """`metadata.title` when set, else the file name."""
    title = video.user_metadata.get("title")
    return str(title) if title else Path(video.uri).name


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round(self.ms.get(name, 0.0) + 1000 * (time.perf_counter() - start), 3)


def _fingerprint(request: SearchRequest, collection: str, top_k: int) -> str:
    key = json.dumps(
        [request.query, collection, request.group_by, top_k, asdict(request.filters)]
        + ([] if request.stage2 else ["stage1-only"]),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def encode_page_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> int:
    """The offset in a page token made for this same request, else InputError."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset, made_for = int(data["o"]), str(data["f"])
    except (binascii.Error, ValueError, KeyError, TypeError) as e:
        raise InputError("invalid page token") from e
    if made_for != fingerprint or offset < 0:
        raise InputError("page token belongs to another query; start again without it")
    return offset


class SearchService:
    """Holds the models and indexes; answers searches. Build once per process."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        encoder_factory: Callable[[str, str], Encoder] = create_encoder,
        localizer: Localizer | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self._encoder_factory = encoder_factory
        self._encoders: dict[str, Encoder] = {}
        self._indexes: dict[int, CollectionIndexes] = {}
        self._stores: dict[int, FeatureStore] = {}
        self._lock = threading.Lock()
        loc = settings.localizer
        self.localizer = localizer or create_localizer(
            loc.name,
            LocalizerOptions(
                checkpoint=loc.checkpoint,
                encoder=settings.encoder.name,
                device=loc.device,
                max_clips=loc.max_clips,
                overlap_clips=loc.overlap_clips,
                max_windows=loc.max_windows,
                nms_iou=loc.nms_iou,
                span_embedder=(
                    action_span_embedder(
                        strategy_for_encoder(settings.levels.strategy, settings.encoder.name)
                    )
                    if loc.name == "spans"
                    else None
                ),
            ),
        )

    # Cached resources ----------------------------------------------------------------

    def encoder(self, spec: str) -> Encoder:
        with self._lock:
            if spec not in self._encoders:
                self._encoders[spec] = self._encoder_factory(spec, self.settings.encoder.device)
            return self._encoders[spec]

    def _store(self, collection: CollectionRecord) -> FeatureStore | None:
        with self._lock:
            if collection.id not in self._stores:
                root = features_dir(self.settings.storage.data_dir, collection.id)
                dim = FeatureStore.stored_dim(root)
                if dim is None:
                    return None
                self._stores[collection.id] = FeatureStore.open(root, dim)
            return self._stores[collection.id]

    def _collection_indexes(self, collection: CollectionRecord, dim: int) -> CollectionIndexes:
        with self._lock:
            if collection.id not in self._indexes:
                self._indexes[collection.id] = CollectionIndexes.open(
                    indexes_dir(self.settings.storage.data_dir, collection.id),
                    collection.encoder_spec,
                    dim,
                    self.settings.index,
                )
            return self._indexes[collection.id]

    def invalidate(self, collection_id: int) -> None:
        """Forget cached indexes of a collection (after an ingest or a deletion)."""
        with self._lock:
            self._indexes.pop(collection_id, None)
            self._stores.pop(collection_id, None)

    # Queries -------------------------------------------------------------------------

    def encode_query(self, text: str, encoder: Encoder) -> QueryText:
        text = text.strip()
        if not text:
            raise InputError("the query is empty")
        if len(text) > self.settings.search.max_query_chars:
            raise InputError(
                f"the query is {len(text)} characters; at most "
                f"{self.settings.search.max_query_chars} are accepted"
            )
        return QueryText.from_features(text, encoder.encode_text([text], MAX_QUERY_TOKENS))

    def _fusion(self) -> FusionParams:
        s = self.settings.search
        return FusionParams(
            weights={
                "global": s.weight_global,
                "action": s.weight_action,
                "entity": s.weight_entity,
            },
            normalisation=s.normalisation,
            k_per_level=s.k_per_level,
        )

    def _clips(
        self, store: FeatureStore, video: VideoRecord, focus: list[tuple[float, float]]
    ) -> VideoClips:
        address = self.catalog.feature_address(video.id)
        return VideoClips(
            video_id=video.id,
            clips=np.asarray(store.read(address)),
            clip_seconds=self.settings.ingest.clip_seconds,
            duration_s=video.duration_s or address.length * self.settings.ingest.clip_seconds,
            focus_s=focus,
        )

    def search(self, request: SearchRequest) -> SearchResponse:
        s = self.settings.search
        top_k = request.top_k or s.top_k
        if not 1 <= top_k <= s.max_top_k:
            raise InputError(f"top_k must be between 1 and {s.max_top_k}, got {top_k}")
        name = request.collection or s.default_collection
        collection = self.catalog.get_collection(name)
        fingerprint = _fingerprint(request, name, top_k)
        offset = decode_page_token(request.page_token, fingerprint) if request.page_token else 0
        timer = _Timer()
        store = self._store(collection)
        if store is None:  # nothing indexed yet
            return SearchResponse(
                request.query, name, request.group_by, [], None, timer.ms if request.debug else None
            )
        with timer.stage("load"):
            encoder = self.encoder(collection.encoder_spec)
            indexes = self._collection_indexes(collection, store.dim)
        with timer.stage("encode_text"):
            query = self.encode_query(request.query, encoder)
        wanted = offset + top_k + 1  # one more tells whether a next page exists
        per_video = s.moments_per_video if request.group_by == "moment" else 1
        n_candidates = min(max(s.candidates, math.ceil(wanted / per_video)), 10 * s.candidates)
        with timer.stage("stage1"):
            candidates = search_candidates(
                self.catalog,
                collection.id,
                indexes,
                {level: query.sentence for level in ("global", "action", "entity")},
                self._fusion(),
                n_candidates,
                request.filters,
            )
        if request.stage2:
            with timer.stage("features"):
                videos = {c.video_id: self.catalog.get_video(c.video_id) for c in candidates}
                clips = [self._clips(store, videos[c.video_id], _focus(c)) for c in candidates]
            with timer.stage("stage2"):
                localized = (
                    self.localizer.localize(query, clips, s.moments_per_video) if clips else []
                )
        else:
            videos = {c.video_id: self.catalog.get_video(c.video_id) for c in candidates}
            localized = [self._segment_moments(c, videos[c.video_id]) for c in candidates]
        moments = _rank(candidates, localized, videos, s.stage1_weight)
        if request.group_by == "video":
            results: list[MomentResult] | list[VideoResult] = _by_video(moments, candidates, videos)
        else:
            results = moments
        page = results[offset : offset + top_k]
        next_token = (
            encode_page_token(offset + top_k, fingerprint)
            if len(results) > offset + top_k
            else None
        )
        return SearchResponse(
            request.query,
            name,
            request.group_by,
            page,
            next_token,
            timer.ms if request.debug else None,
        )

    def _segment_moments(self, candidate: Candidate, video: VideoRecord) -> VideoMoments:
        """Stage 1 alone: the candidate's best action/entity segments as its moments.

        Each moment is scored by its segment's stage-1 cosine (in place of a localizer
        score), duplicates merged by NMS as the localizer would. A video that only the
        global level found gets one moment spanning the whole video.
        """
        hits = [h for h in candidate.segments if h.level != "global"]  # best first
        found = nms(
            [Moment(h.start_s, h.end_s, h.score) for h in hits],
            self.settings.localizer.nms_iou,
            self.settings.search.moments_per_video,
        )
        if not found:
            duration_s = (
                video.duration_s or (video.n_clips or 0) * self.settings.ingest.clip_seconds
            )
            found = [Moment(0.0, duration_s, candidate.level_scores.get("global", 0.0))]
        return VideoMoments(video.id, found, np.zeros(0, dtype=np.float32))  # no saliency curve

    def moments_in_video(self, video_id: int, text: str, top_k: int) -> list[MomentResult]:
        """Localize `text` inside one ready video (no stage 1)."""
        if not 1 <= top_k <= self.settings.search.max_top_k:
            raise InputError(f"top_k must be between 1 and {self.settings.search.max_top_k}")
        video = self.catalog.get_video(video_id)
        collection = self.catalog.collection_of_video(video_id)
        store = self._store(collection)
        if store is None or video.status != "ready":
            raise InputError(f"video {video_id} is not indexed (status {video.status})")
        query = self.encode_query(text, self.encoder(collection.encoder_spec))
        (found,) = self.localizer.localize(query, [self._clips(store, video, [])], top_k)
        return [
            MomentResult(
                video.id,
                video.uri,
                title_of(video),
                m.start_s,
                m.end_s,
                float(m.score),
                0.0,
                float(m.score),
                {},
                video.duration_s,
                video.user_metadata,
            )
            for m in found.moments[:top_k]
        ]


def _focus(candidate: Candidate) -> list[tuple[float, float]]:
    """Stage-1 action/entity hits, best first: where windowing looks first."""
    return [(h.start_s, h.end_s) for h in candidate.segments if h.level != "global"][:4]


def _rank(
    candidates: list[Candidate],
    localized: list[Any],
    videos: dict[int, VideoRecord],
    stage1_weight: float,
) -> list[MomentResult]:
    moments = []
    for candidate, found in zip(candidates, localized, strict=True):
        video = videos[candidate.video_id]
        for moment in found.moments:
            final = stage1_weight * candidate.score + (1 - stage1_weight) * float(moment.score)
            moments.append(
                MomentResult(
                    video.id,
                    video.uri,
                    title_of(video),
                    float(moment.start_s),
                    float(moment.end_s),
                    final,
                    candidate.score,
                    float(moment.score),
                    candidate.level_scores,
                    video.duration_s,
                    video.user_metadata,
                )
            )
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start_s))
    return moments


def _by_video(
    moments: list[MomentResult], candidates: list[Candidate], videos: dict[int, VideoRecord]
) -> list[VideoResult]:
    grouped: dict[int, list[MomentResult]] = {}
    for moment in moments:
        grouped.setdefault(moment.video_id, []).append(moment)
    stage1 = {c.video_id: c for c in candidates}
    results = [
        VideoResult(
            video_id,
            videos[video_id].uri,
            title_of(videos[video_id]),
            found[0].score,
            stage1[video_id].score,
            stage1[video_id].level_scores,
            videos[video_id].duration_s,
            videos[video_id].user_metadata,
            found,
        )
        for video_id, found in grouped.items()
    ]
    results.sort(key=lambda r: (-r.score, r.video_id))
    return results
