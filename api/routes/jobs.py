"""GET /v1/jobs/{id}: an ingest job's status and progress; GET /v1/jobs: recent jobs."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CatalogDep
from api.routes import error_responses
from api.schemas import JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=list[JobOut], responses=error_responses())
def list_jobs(catalog: CatalogDep, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[JobOut]:
    """The most recent jobs, newest first."""
    return [JobOut.model_validate(job) for job in catalog.list_jobs(limit)]


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get_job(job_id: int, catalog: CatalogDep) -> JobOut:
    """One job: status (running, succeeded, failed), counts and progress (0-1)."""
    return JobOut.model_validate(catalog.get_job(job_id))
