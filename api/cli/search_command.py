"""`vtr search "text"`: the best moments across a collection, as a table or JSON."""

import json
from typing import Annotated, Literal

import typer

from api.cli.output import emit, print_table, stdout
from api.cli.state import state_of
from api.search import MomentResult, SearchRequest, SearchResponse, SearchService, VideoResult
from engine.errors import InputError
from index.stage1 import SearchFilters


def mmss(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss past an hour)."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _render(response: SearchResponse) -> None:
    rows: list[tuple[object, ...]] = []
    for rank, result in enumerate(response.results, 1):
        if isinstance(result, VideoResult):
            spans = ", ".join(f"{mmss(m.start_s)}-{mmss(m.end_s)}" for m in result.moments)
            rows.append((rank, result.title, spans, f"{result.score:.3f}", result.video_id))
        else:
            assert isinstance(result, MomentResult)
            span = f"{mmss(result.start_s)}-{mmss(result.end_s)}"
            rows.append((rank, result.title, span, f"{result.score:.3f}", result.video_id))
    print_table(
        f"{response.query!r} in {response.collection}",
        ["#", "video", "moments" if response.group_by == "video" else "moment", "score", "id"],
        rows,
        empty="no results",
    )
    if response.timings_ms:
        stdout.print(
            "timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in response.timings_ms.items())
        )
    if response.next_page_token:
        stdout.print(f"next page: --page-token {response.next_page_token}")


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Default: search.default_collection.")
    ] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, help="Results.")] = None,
    group_by: Annotated[
        str, typer.Option("--group-by", help="moment (default) or video.")
    ] = "moment",
    min_duration: Annotated[float | None, typer.Option(help="Only videos this long (s).")] = None,
    max_duration: Annotated[float | None, typer.Option(help="Only videos this short (s).")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--where", help="KEY=VALUE on user metadata (JSON value).")
    ] = None,
    page_token: Annotated[str | None, typer.Option(help="From a previous page.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show per-stage timings.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the best moments for a sentence across a collection."""
    if group_by not in ("moment", "video"):
        raise InputError(f"--group-by must be 'moment' or 'video', not {group_by!r}")
    required: dict[str, object] = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--where expects KEY=VALUE, got {item!r}")
        try:
            required[key] = json.loads(value)
        except json.JSONDecodeError:
            required[key] = value
    state = state_of(ctx)
    service = SearchService(state.settings, state.catalog)
    grouping: Literal["moment", "video"] = "video" if group_by == "video" else "moment"
    response = service.search(
        SearchRequest(
            query,
            collection,
            top_k,
            grouping,
            SearchFilters(min_duration, max_duration, required),
            page_token,
            debug,
        )
    )
    emit(as_json, response.to_dict(), lambda: _render(response))
