"""Prometheus metrics for the HTTP API, in the text exposition format (version 0.0.4).

A tiny in-process registry (counters and cumulative histograms with labels, thread-safe)
instead of a client library: the server needs three metrics and nothing else.

- `vtr_http_requests_total{method, route, status}`: requests answered, by route template.
- `vtr_http_request_duration_seconds{method, route}`: request latency histogram.
- `vtr_search_stage_seconds{stage}`: per-stage search latency, from the search
  service's `timings_ms` (load, encode_text, stage1, features, stage2).

Each process (uvicorn worker) has its own registry; scrape each one, or run one worker.
"""

import math
import threading
import time
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, extra] if extra is not None else list(labels)
    if not items:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in items) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Mapping[str, str], amount: float = 1.0) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, labels: Mapping[str, str]) -> float:
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(key)} {_number(value)}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}  # counts, [sum, n]
        self._lock = threading.Lock()

    def observe(self, labels: Mapping[str, str], value: float) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * len(self.buckets), [0.0, 0.0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            total[0] += value
            total[1] += 1

    def count(self, labels: Mapping[str, str]) -> int:
        with self._lock:
            series = self._series.get(tuple(sorted(labels.items())))
            return int(series[1][1]) if series else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, (counts, (total, n)) in sorted(self._series.items()):
                for bound, count in zip(self.buckets, counts, strict=True):
                    le = ("le", _number(bound))
                    lines.append(f"{self.name}_bucket{_labels(key, le)} {count}")
                lines.append(f"{self.name}_bucket{_labels(key, ('le', '+Inf'))} {int(n)}")
                lines.append(f"{self.name}_sum{_labels(key)} {_number(total)}")
                lines.append(f"{self.name}_count{_labels(key)} {int(n)}")
        return lines


class Metrics:
    """The API's metrics; one per app."""

    def __init__(self) -> None:
        self.requests = Counter("vtr_http_requests_total", "HTTP requests answered.")
        self.latency = Histogram(
            "vtr_http_request_duration_seconds", "HTTP request latency.", LATENCY_BUCKETS_S
        )
        self.search_stages = Histogram(
            "vtr_search_stage_seconds", "Search latency per stage.", LATENCY_BUCKETS_S
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.inc({"method": method, "route": route, "status": str(status)})
        self.latency.observe({"method": method, "route": route}, seconds)

    def observe_search(self, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.search_stages.observe({"stage": stage}, ms / 1000.0)

    def render(self) -> str:
        lines = self.requests.render() + self.latency.render() + self.search_stages.render()
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Counts every HTTP request by route template (not raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(
                scope["method"], route_template(scope), status, time.perf_counter() - start
            )


def route_template(scope: Scope) -> str:
    """The matched route's path template with its router prefixes ("/v1/jobs/{job_id}").

    The route object knows only its own part ("/jobs/{job_id}"); the prefixes (which
    hold no parameters in this app) are the leading segments of the request path.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return "unmatched"
    parts = str(scope.get("path", "")).split("/")
    prefix = "/".join(parts[: max(1, len(parts) - template.count("/"))])
    return prefix + template
