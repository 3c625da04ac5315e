"""Videos: show, delete (with their index vectors), moments inside one, stream, thumbnail.

The stream and thumbnail routes read the video's file only when it lies inside
`api.media_roots` or the uploads directory (resolved, so a symlink cannot lead out);
they sit on their own router because they also accept the web page's key cookie.
"""

from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import AppState, CatalogDep, SearcherDep, StateDep
from api.media import is_within, remove_upload, stream_file
from api.routes import error_responses, invalid
from api.schemas import MAX_TOP_K, MomentOut, MomentsOut, VideoOut
from engine.errors import NotFoundError
from engine.feature_store import FeatureStore
from engine.sources import local_path
from index.catalog import Catalog, CollectionRecord, VideoRecord
from index.catalog_schema import Segment
from index.collection_index import CollectionIndexes, collection_lock, features_dir, indexes_dir

router = APIRouter(prefix="/videos", tags=["videos"])
media_router = APIRouter(prefix="/videos", tags=["videos"])


def _collection_of(catalog: Catalog, video: VideoRecord) -> CollectionRecord:
    for collection in catalog.list_collections():
        if collection.id == video.collection_id:
            return collection
    raise NotFoundError(f"video {video.id} belongs to no known collection")


def _segment_ids(catalog: Catalog, video_id: int) -> np.ndarray:
    with catalog.session() as session:
        ids = session.scalars(select(Segment.id).where(Segment.video_id == video_id)).all()
    return np.asarray(ids, dtype=np.int64)


@router.get("/{video_id}", response_model=VideoOut, responses=error_responses(404))
def get_video(video_id: int, catalog: CatalogDep) -> VideoOut:
    """One video's catalog record: status, probe data, error, metadata."""
    return VideoOut.model_validate(catalog.get_video(video_id))


@router.delete("/{video_id}", response_model=VideoOut, responses=error_responses(404, 409))
def delete_video(video_id: int, state: StateDep, catalog: CatalogDep) -> VideoOut:
    """Delete a video: its catalog rows, its vectors in the collection's indexes, and its
    file when it was uploaded. 409 while an ingest runs on its collection."""
    video = catalog.get_video(video_id)
    collection = _collection_of(catalog, video)
    data_dir = state.settings.storage.data_dir
    with collection_lock(data_dir, collection):
        segment_ids = _segment_ids(catalog, video_id)
        deleted = catalog.delete_video(video_id)
        dim = FeatureStore.stored_dim(features_dir(data_dir, collection.id))
        if dim is not None and len(segment_ids):
            indexes = CollectionIndexes.open(
                indexes_dir(data_dir, collection.id),
                collection.encoder_spec,
                dim,
                state.settings.index,
            )
            indexes.remove(segment_ids)
            indexes.save()
    state.forget_indexes(collection.id)
    if is_within(Path(video.uri), [state.uploads]):
        remove_upload(Path(video.uri), data_dir)
    return VideoOut.model_validate(deleted)


@router.get("/{video_id}/moments", response_model=MomentsOut, responses=error_responses(400, 404))
def moments(
    video_id: int,
    query: Annotated[str, Query(min_length=1, max_length=10000)],
    state: StateDep,
    searcher: SearcherDep,
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
) -> MomentsOut:
    """The best moments for `query` inside one indexed video (the localizer alone)."""
    limits = state.settings.search
    if top_k > limits.max_top_k:
        raise invalid(("query", "top_k"), f"must be at most {limits.max_top_k}", top_k)
    if len(query.strip()) > limits.max_query_chars:
        raise invalid(("query", "query"), f"must be at most {limits.max_query_chars} characters")
    catalog = state.catalog()
    state.refresh_indexes(_collection_of(catalog, catalog.get_video(video_id)))
    found = searcher.moments_in_video(video_id, query, top_k)
    return MomentsOut(
        video_id=video_id, query=query, moments=[MomentOut.model_validate(m) for m in found]
    )


def _video_file(state: AppState, video_id: int) -> tuple[VideoRecord, Path]:
    video = state.catalog().get_video(video_id)
    path = state.media_file(local_path(video.uri))
    if not path.is_file():
        raise NotFoundError(f"video {video_id}: {video.uri} is not a file")
    return video, path


@media_router.get(
    "/{video_id}/stream",
    response_class=Response,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The whole file"},
        206: {"content": {"video/mp4": {}}, "description": "The requested byte range"},
        **error_responses(403, 404, 416),
    },
)
def stream(
    video_id: int,
    state: StateDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The video file, with HTTP byte ranges (206) so players can seek."""
    _, path = _video_file(state, video_id)
    return stream_file(path, range_)


@media_router.get(
    "/{video_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG frame"},
        **error_responses(403, 404),
    },
)
def thumbnail(
    video_id: int,
    state: StateDep,
    t: Annotated[float, Query(ge=0, le=1e7, description="Time in the video (s).")] = 0.0,
    width: Annotated[int | None, Query(ge=16, le=1920, description="Pixels wide.")] = None,
) -> Response:
    """The frame at `t` seconds as a JPEG (the last frame when `t` is past the end)."""
    video, path = _video_file(state, video_id)
    data = state.thumbnails.get(
        path, (video.id, video.sha256), t, width or state.settings.api.thumbnail_width
    )
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )
