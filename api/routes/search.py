"""POST /v1/search: a sentence in, ranked moments (or videos) out, paginated.

Runs in the threadpool (a plain `def`): encoding and localizing are CPU work, and
concurrent searches share the one SearchService of the app.
"""

from fastapi import APIRouter

from api.deps import SearcherDep, StateDep
from api.routes import error_responses, invalid
from api.schemas import SearchIn, SearchOut
from api.search import SearchRequest
from index.stage1 import SearchFilters

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchOut, responses=error_responses(400, 404))
def search(body: SearchIn, state: StateDep, searcher: SearcherDep) -> SearchOut:
    """Find the moments that best match `query` in one collection."""
    limits = state.settings.search
    if body.top_k is not None and body.top_k > limits.max_top_k:
        raise invalid(("body", "top_k"), f"must be at most {limits.max_top_k}", body.top_k)
    if not body.query.strip():
        raise invalid(("body", "query"), "must contain more than spaces", body.query)
    if len(body.query.strip()) > limits.max_query_chars:
        raise invalid(("body", "query"), f"must be at most {limits.max_query_chars} characters")
    low, high = body.filters.min_duration_s, body.filters.max_duration_s
    if low is not None and high is not None and low > high:
        raise invalid(("body", "filters"), "min_duration_s is above max_duration_s")
    name = body.collection or limits.default_collection
    state.refresh_indexes(state.catalog().get_collection(name))
    response = searcher.search(
        SearchRequest(
            query=body.query,
            collection=name,
            top_k=body.top_k,
            group_by=body.group_by,
            filters=SearchFilters(low, high, dict(body.filters.metadata)),
            page_token=body.page_token,
            debug=True,  # timings feed the metrics; returned only when asked
        )
    )
    if response.timings_ms:
        state.metrics.observe_search(response.timings_ms)
    out = SearchOut.model_validate(response)
    if not body.debug:
        out.timings_ms = None
    return out
