"""``GET /metrics``: the server's figures in Prometheus' text format, through prometheus-client.

Per request (filled by the guard middleware, whatever route answered): requests by model, route and
status; request duration and time to first token (streamed answers) histograms; prompt and generated
tokens; generation speed in tokens per second. Read from the runtime at each scrape: requests waiting and
running per loaded model, what each took to load (seconds, measured memory), requests its queue refused,
and the watchdog's evictions by reason. Process CPU time and memory come from prometheus-client's
process collector.

Each app has a registry of its own, so several servers in one process (tests) do not collide. ``model`` is
the loaded model's name, or empty when the request named no model that got loaded: a client cannot grow
the series by sending made-up names.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from corral.server.request_log import RequestRecord

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
SPEED_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)


class _RuntimeCollector:
    """Gauges read from the runtime and the watchdog when Prometheus scrapes."""

    def __init__(self, runtime: Any, watchdog: Any) -> None:
        self.runtime = runtime
        self.watchdog = watchdog

    def describe(self) -> list:
        return []  # collected fresh at each scrape

    def collect(self) -> Iterator[Any]:
        entries = self.runtime.entries()
        loaded = GaugeMetricFamily("corral_models_loaded", "Models loaded now", value=len(entries))
        waiting = GaugeMetricFamily("corral_queue_waiting", "Requests waiting for a loaded model", labels=["model"])
        running = GaugeMetricFamily("corral_queue_running", "Requests a loaded model is serving now", labels=["model"])
        memory = GaugeMetricFamily("corral_model_memory_bytes", "Memory a loaded model took, measured after its load",
                                   labels=["model", "kind"])
        load = GaugeMetricFamily("corral_model_load_seconds", "Seconds the load of a loaded model took", labels=["model"])
        rejected = CounterMetricFamily("corral_queue_rejected", "Requests refused with 503 by a loaded model's full "
                                       "queue, since its load", labels=["model"])
        served = CounterMetricFamily("corral_queue_served", "Requests a loaded model served since its load",
                                     labels=["model"])
        nodes = GaugeMetricFamily("corral_model_node", "The cluster node a loaded model runs on (1 per model "
                                  "placed by a cluster executor)", labels=["model", "node"])
        for entry in entries:
            if getattr(entry, "node", None):
                nodes.add_metric([entry.model.name, entry.node], 1)
            name, queue = entry.model.name, entry.queue
            waiting.add_metric([name], queue.waiting)
            count = getattr(queue, "running", None)
            running.add_metric([name], count if isinstance(count, int) else int(bool(queue.busy)))
            for kind in ("ram", "vram"):
                memory.add_metric([name, kind], int(entry.memory.get(kind, 0) or 0))
            seconds = getattr(entry, "load_seconds", None)
            if seconds is not None:
                load.add_metric([name], float(seconds))
            rejected.add_metric([name], queue.rejected)
            served.add_metric([name], queue.served)
        evictions = CounterMetricFamily("corral_watchdog_evictions", "Models the watchdog unloaded, by reason",
                                        labels=["reason"])
        counts = getattr(self.watchdog, "evictions", None) or {}
        for reason in ("keep_alive", "memory"):
            evictions.add_metric([reason], counts.get(reason, 0))
        yield from (loaded, waiting, running, memory, load, rejected, served, nodes, evictions)


class Metrics:
    """The figures of one server."""

    def __init__(self, runtime: Any, watchdog: Any = None) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("corral_requests", "HTTP requests answered, by model, route and status",
                                ("model", "route", "status"), registry=registry)
        self.duration = Histogram("corral_request_duration_seconds", "Seconds from a request's headers to the "
                                  "end of its answer", ("model", "route"), buckets=DURATION_BUCKETS,
                                  registry=registry)
        self.ttft = Histogram("corral_time_to_first_token_seconds", "Seconds from a request to the first token "
                              "of its streamed answer", ("model", "route"), buckets=TTFT_BUCKETS, registry=registry)
        self.prompt_tokens = Counter("corral_prompt_tokens", "Prompt tokens of answered requests", ("model",),
                                     registry=registry)
        self.generated = Counter("corral_generated_tokens", "Tokens generated", ("model",), registry=registry)
        self.speed = Histogram("corral_generation_tokens_per_second", "Generation speed of each answer (tokens "
                               "after the first over the time after it, for streams)", ("model",),
                               buckets=SPEED_BUCKETS, registry=registry)
        ProcessCollector(registry=registry)
        registry.register(_RuntimeCollector(runtime, watchdog))
        self._children: dict[tuple, Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() costs a lock and a validation per call; the children are kept here instead.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, record: RequestRecord) -> None:
        model = record.model or ""
        route = record.route or "unmatched"
        self._child(self.requests, model, route, str(record.status or 0)).inc()
        self._child(self.duration, model, route).observe(record.duration)
        ttft = record.ttft
        if ttft is not None and record.status == 200:
            self._child(self.ttft, model, route).observe(ttft)
        if record.prompt_tokens:
            self._child(self.prompt_tokens, model).inc(record.prompt_tokens)
        tokens = record.completion_tokens
        if tokens:
            self._child(self.generated, model).inc(tokens)
            ended = record.ended or record.started
            if record.stream and record.first_byte is not None and tokens > 1 and ended > record.first_byte:
                self._child(self.speed, model).observe((tokens - 1) / (ended - record.first_byte))
            elif ended > record.started:
                self._child(self.speed, model).observe(tokens / (ended - record.started))

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def metrics_endpoint(request: Any) -> Any:
    from starlette.responses import Response

    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list:
    from starlette.routing import Route

    return [Route("/metrics", metrics_endpoint, methods=["GET"])]
