"""HTTP API schemas (pydantic): what goes over the wire, apart from the catalog's tables.

Requests are validated here (types, ranges, lengths); responses are built from the
catalog's records and the search service's results with `from_attributes`, so the
OpenAPI document at /openapi.json describes every body exactly.
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOP_K = 1000  # static bound for the schema; `search.max_top_k` is checked per request


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(BaseModel):
    code: str = Field(description="Short machine-readable code, e.g. not_found.")
    message: str = Field(description="What went wrong, for a person.")


class ErrorBody(BaseModel):
    """Every error response, whatever its status."""

    error: ErrorDetail


# Search ------------------------------------------------------------------------------


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_duration_s: float | None = Field(default=None, ge=0, description="Shortest video (s).")
    max_duration_s: float | None = Field(default=None, ge=0, description="Longest video (s).")
    metadata: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        max_length=32,
        description="User-metadata keys whose values must equal these.",
    )


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10000, description="What to find, in words.")
    collection: str | None = Field(
        default=None, max_length=100, description="Collection (default: search.default_collection)."
    )
    top_k: int | None = Field(
        default=None, ge=1, le=MAX_TOP_K, description="Results per page (<= search.max_top_k)."
    )
    group_by: Literal["moment", "video"] = "moment"
    filters: SearchFiltersIn = Field(default_factory=SearchFiltersIn)
    page_token: str | None = Field(
        default=None, max_length=512, description="next_page_token of the previous page."
    )
    debug: bool = Field(default=False, description="Return per-stage timings (ms).")


class MomentOut(_Out):
    video_id: int
    uri: str
    title: str
    start_s: float
    end_s: float
    score: float = Field(description="Final score: stage-1 and stage-2 combined.")
    stage1_score: float
    stage2_score: float
    level_scores: dict[str, float]
    duration_s: float | None
    metadata: dict[str, Any]


class VideoHitOut(_Out):
    video_id: int
    uri: str
    title: str
    score: float = Field(description="Its best moment's final score.")
    stage1_score: float
    level_scores: dict[str, float]
    duration_s: float | None
    metadata: dict[str, Any]
    moments: list[MomentOut]


class SearchOut(_Out):
    query: str
    collection: str
    group_by: Literal["moment", "video"]
    results: list[MomentOut] | list[VideoHitOut]
    next_page_token: str | None
    timings_ms: dict[str, float] | None = Field(
        default=None, description="Per-stage wall time (ms), only when debug was asked."
    )


class MomentsOut(BaseModel):
    video_id: int
    query: str
    moments: list[MomentOut]


# Catalog -----------------------------------------------------------------------------


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    encoder: str | None = Field(
        default=None, max_length=300, description="Encoder name (default: encoder.name)."
    )


class CollectionOut(_Out):
    id: int
    name: str
    encoder_spec: str
    created_at: datetime
    n_videos: int


class VideoOut(_Out):
    id: int
    collection_id: int
    uri: str
    sha256: str
    status: str
    duration_s: float | None
    fps: float | None
    width: int | None
    height: int | None
    n_clips: int | None
    error: str | None
    user_metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class VideoListOut(BaseModel):
    videos: list[VideoOut]
    next_offset: int | None = Field(description="Offset of the next page; null at the end.")


class IngestPathsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(
        min_length=1,
        max_length=1000,
        description="Absolute server-side files or directories, or file:// URIs, "
        "inside api.media_roots.",
    )
    recursive: bool = Field(default=False, description="Descend into subdirectories.")


class JobOut(_Out):
    id: int
    kind: str
    collection_id: int | None
    status: str
    progress: float = Field(description="Finished share of the job's videos (0-1).")
    n_total: int
    n_done: int
    n_failed: int
    n_skipped: int
    error: str | None
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    catalog_schema: str | None
