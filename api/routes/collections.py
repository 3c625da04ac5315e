"""Collections: list, create, show, delete; list their videos; add videos (an ingest job).

`POST /v1/collections/{name}/videos` takes either JSON `{"paths": [...], "recursive":
false}` naming server-side files, directories or file:// URIs inside `api.media_roots`
(each resolved, symlinks included, and checked to lie inside them; so is every file
found in a directory), or a multipart upload (`files`, one or more) stored under
`<data_dir>/uploads`. It answers 202 with the ingest job, which runs in a background
thread; `GET /v1/jobs/{id}` follows it.
"""

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.deps import AppState, CatalogDep, StateDep
from api.media import (
    ForbiddenError,
    confine,
    is_within,
    remove_upload,
    request_path,
    save_upload,
)
from api.routes import error_responses, invalid
from api.schemas import CollectionIn, CollectionOut, IngestPathsIn, JobOut, VideoListOut, VideoOut
from engine.encoder_registry import resolve_encoder
from engine.errors import InputError, ModelError
from engine.sources import discover_videos
from index.catalog import CollectionRecord, JobRecord, VideoRecord
from index.catalog_schema import VideoStatus
from index.collection_index import collection_lock, features_dir, indexes_dir
from index.ingest import IngestResult

router = APIRouter(prefix="/collections", tags=["collections"])

MAX_UPLOAD_FILES = 100
UPLOAD_FIELD = "files"


@router.get("", response_model=list[CollectionOut], responses=error_responses())
def list_collections(catalog: CatalogDep) -> list[CollectionOut]:
    """Every collection with its video count, by name."""
    return [CollectionOut.model_validate(c) for c in catalog.list_collections()]


@router.post(
    "",
    response_model=CollectionOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 409),
)
def create_collection(body: CollectionIn, state: StateDep, catalog: CatalogDep) -> CollectionOut:
    """An empty collection; its videos will be encoded with `encoder`."""
    encoder = body.encoder or state.settings.encoder.name
    try:
        resolve_encoder(encoder)
    except ModelError as e:
        raise InputError(str(e)) from e
    return CollectionOut.model_validate(catalog.create_collection(body.name, encoder))


@router.get("/{name}", response_model=CollectionOut, responses=error_responses(404))
def get_collection(name: str, catalog: CatalogDep) -> CollectionOut:
    return CollectionOut.model_validate(catalog.get_collection(name))


@router.delete("/{name}", response_model=CollectionOut, responses=error_responses(404, 409))
def delete_collection(name: str, state: StateDep, catalog: CatalogDep) -> CollectionOut:
    """Delete a collection with its videos, features, indexes and uploaded files.

    409 while an ingest runs on it.
    """
    record = catalog.get_collection(name)
    data_dir = state.settings.storage.data_dir
    with collection_lock(data_dir, record):
        uploaded = [
            Path(v.uri) for v in _all_videos(state, name) if is_within(Path(v.uri), [state.uploads])
        ]
        deleted = catalog.delete_collection(name)
        shutil.rmtree(features_dir(data_dir, record.id), ignore_errors=True)
        shutil.rmtree(indexes_dir(data_dir, record.id), ignore_errors=True)
    state.forget_indexes(record.id)
    for path in uploaded:
        remove_upload(path, data_dir)
    return CollectionOut.model_validate(deleted)


def _all_videos(state: AppState, name: str) -> list[VideoRecord]:
    catalog, page = state.catalog(), 1000
    videos: list[VideoRecord] = []
    while True:
        batch = catalog.list_videos(name, limit=page, offset=len(videos))
        videos.extend(batch)
        if len(batch) < page:
            return videos


@router.get("/{name}/videos", response_model=VideoListOut, responses=error_responses(404))
def list_videos(
    name: str,
    catalog: CatalogDep,
    status_: Annotated[VideoStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> VideoListOut:
    """A page of the collection's videos by id, optionally of one status."""
    videos = catalog.list_videos(name, status_, limit=limit + 1, offset=offset)
    return VideoListOut(
        videos=[VideoOut.model_validate(v) for v in videos[:limit]],
        next_offset=offset + limit if len(videos) > limit else None,
    )


# Ingest ------------------------------------------------------------------------------


def resolve_inputs(texts: Sequence[str], recursive: bool, state: AppState) -> list[Path]:
    """Client paths -> resolved video files, every one inside `api.media_roots`.

    Files named one by one need a video extension too, and nothing in the data
    directory is taken, so no request can register (and then stream) other files.
    """
    roots = state.media_roots
    if not roots:
        raise ForbiddenError(
            "ingest by path is disabled on this server (api.media_roots is empty); upload files"
        )
    extensions = {e.lower() for e in state.settings.ingest.extensions}
    files: dict[Path, None] = {}
    for text in texts:
        path = confine(request_path(text), roots)
        if path.is_dir():
            found = discover_videos([path], extensions, recursive=recursive)
        elif path.suffix.lower() in extensions:
            found = [path]
        else:
            raise InputError(
                f"{text}: not a video file extension ({', '.join(sorted(extensions))})"
            )
        for child in found:
            if not is_within(child, roots):
                raise ForbiddenError(
                    f"{child} (found under {text}) is outside the directories this server may read"
                )
            if is_within(child, [state.data_dir]):
                raise ForbiddenError(f"{child} is inside the data directory")
            files[child] = None
    if not files:
        raise InputError(f"no video files in {', '.join(texts)}")
    return list(files)


def _save_uploads(uploads: list[UploadFile], state: AppState) -> list[Path]:
    saved: list[Path] = []
    try:
        for upload in uploads:
            saved.append(
                save_upload(
                    upload.file,
                    upload.filename or "upload",
                    state.settings.storage.data_dir,
                    state.settings.ingest.extensions,
                )
            )
    except BaseException:
        for path in saved:
            remove_upload(path, state.settings.storage.data_dir)
        raise
    return saved


def _cleanup_uploads(state: AppState, uploads: list[Path]) -> Callable[[IngestResult | None], None]:
    """After the job: delete uploaded copies of videos that the collection already had."""

    def cleanup(result: IngestResult | None) -> None:
        if result is None:
            return
        catalog = state.catalog()
        kept = {catalog.get_video(video_id).uri for video_id in result.ready}
        kept.update(uri for uri, _ in result.failed)
        for path in uploads:
            if str(path) not in kept:
                remove_upload(path, state.settings.storage.data_dir)

    return cleanup


def _start(
    state: AppState, collection: CollectionRecord, paths: list[Path], uploads: bool
) -> JobRecord:
    jobs = state.jobs()
    try:
        return jobs.start(
            collection,
            paths,
            on_cleanup=_cleanup_uploads(state, paths) if uploads else None,
        )
    except BaseException:
        if uploads:
            for path in paths:
                remove_upload(path, state.settings.storage.data_dir)
        raise


_INGEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": IngestPathsIn.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    UPLOAD_FIELD: {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "Video files (up to api.max_upload_mb in all).",
                    }
                },
                "required": [UPLOAD_FIELD],
            }
        },
    },
}


ingest_router = APIRouter(prefix="/collections", tags=["collections"])
"""Included with `max_body_size` = api.max_upload_mb (the other routes: max_request_kb)."""


@ingest_router.post(
    "/{name}/videos",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(400, 403, 404, 409, 413),
    openapi_extra={"requestBody": _INGEST_BODY},
)
async def add_videos(name: str, request: Request, response: Response, state: StateDep) -> JobOut:
    """Index videos: server-side paths (JSON) or uploaded files (multipart); 202 + job."""
    collection = await run_in_threadpool(lambda: state.catalog().get_collection(name))
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
        try:
            uploads = [f for f in form.getlist(UPLOAD_FIELD) if isinstance(f, UploadFile)]
            if not uploads:
                raise invalid(("body", UPLOAD_FIELD), "at least one file is required")
            paths = await run_in_threadpool(_save_uploads, uploads, state)
        finally:
            await form.close()
        is_upload = True
    elif content_type.startswith("application/json") or not content_type:
        try:
            body = IngestPathsIn.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
            ) from e
        paths = await run_in_threadpool(resolve_inputs, body.paths, body.recursive, state)
        is_upload = False
    else:
        raise InputError(
            f"unsupported content type {content_type!r}: send application/json with "
            "paths, or multipart/form-data with files"
        )
    job = await run_in_threadpool(_start, state, collection, paths, is_upload)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.model_validate(job)
