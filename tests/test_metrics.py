"""`/metrics` after real requests (tiny GGUF through llama.cpp, all-MiniLM-L6-v2), read back with
prometheus-client's own parser: the figures match what the answers said."""

from __future__ import annotations

import json

import pytest

from test_server_guards import CHAT, WAIT, guarded_server, options, real_library, say  # noqa: F401 - fixtures

httpx = pytest.importorskip("httpx")
parser = pytest.importorskip("prometheus_client.parser")


def scrape(server, **kwargs) -> dict:
    """``{(name, frozenset(labels)): value}`` of one scrape."""
    answer = httpx.get(server.url + "/metrics", timeout=WAIT, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in parser.text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_match_the_requests_served(real_library):  # noqa: F811
    from corral.runtime.watchdog import Watchdog

    memory = {"percent": 10.0}

    def watchdog(runtime):  # ticks only when the test says so
        return Watchdog(runtime, memory=lambda: memory["percent"], interval=3600)

    with guarded_server(real_library, watchdog=watchdog) as srv:
        post = lambda path, body: httpx.post(srv.url + path, json=body, timeout=WAIT)  # noqa: E731
        answers = [post(CHAT, say("one")), post(CHAT, say("two", max_tokens=6))]
        assert all(a.status_code == 200 for a in answers)
        completion = sum(a.json()["usage"]["completion_tokens"] for a in answers)
        prompt = sum(a.json()["usage"]["prompt_tokens"] for a in answers)
        streamed_usage = None
        with httpx.stream("POST", srv.url + CHAT, json=say("three", stream=True,
                                                           stream_options={"include_usage": True}),
                          timeout=WAIT) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: {") and '"usage"' in line:
                    streamed_usage = json.loads(line[6:])["usage"] or streamed_usage
        assert streamed_usage is not None
        completion += streamed_usage["completion_tokens"]
        prompt += streamed_usage["prompt_tokens"]
        assert post("/v1/embeddings", {"model": "minilm", "input": ["a", "b"]}).status_code == 200
        assert post(CHAT, {**say(), "model": "no-such-model"}).status_code == 404
        assert post(CHAT, {"model": "tiny"}).status_code == 400
        assert httpx.get(srv.url + "/v1/models", timeout=WAIT, headers={"Host": "evil.example"}).status_code == 403

        samples = scrape(srv)
        route = "/v1/chat/completions"
        assert value(samples, "corral_requests_total", model="tiny", route=route, status="200") == 3
        assert value(samples, "corral_requests_total", model="tiny", route=route, status="400") == 1
        assert value(samples, "corral_requests_total", model="", route=route, status="404") == 1
        assert value(samples, "corral_requests_total", model="minilm", route="/v1/embeddings", status="200") == 1
        assert value(samples, "corral_requests_total", model="", route="/v1/models", status="403") == 1
        assert value(samples, "corral_generated_tokens_total", model="tiny") == completion
        assert value(samples, "corral_prompt_tokens_total", model="tiny") == prompt
        assert value(samples, "corral_request_duration_seconds_count", model="tiny", route=route) == 4
        assert value(samples, "corral_request_duration_seconds_sum", model="tiny", route=route) > 0
        assert value(samples, "corral_time_to_first_token_seconds_count", model="tiny", route=route) == 1
        assert value(samples, "corral_generation_tokens_per_second_count", model="tiny") == 3
        assert value(samples, "corral_models_loaded") == 2
        for name in ("tiny", "minilm"):
            assert value(samples, "corral_queue_waiting", model=name) == 0
            assert value(samples, "corral_queue_running", model=name) == 0
            assert value(samples, "corral_model_memory_bytes", model=name, kind="ram") > 0
            assert value(samples, "corral_model_load_seconds", model=name) > 0
        assert value(samples, "corral_queue_served_total", model="tiny") == 3  # the 400 never queued
        assert value(samples, "process_resident_memory_bytes") > 0
        assert value(samples, "process_cpu_seconds_total") > 0
        assert value(samples, "corral_watchdog_evictions_total", reason="memory") == 0

        # The watchdog's evictions are counted by reason.
        memory["percent"] = 99.0
        assert sorted(srv.service.watchdog.relieve()) == ["minilm", "tiny"]
        after = scrape(srv)
        assert value(after, "corral_watchdog_evictions_total", reason="memory") == 2
        assert value(after, "corral_models_loaded") == 0
        assert value(after, "corral_requests_total", model="", route="/metrics", status="200") == 1


def test_metrics_need_the_key_when_keys_are_on(real_library):  # noqa: F811
    from corral.keys import KeyRing

    with guarded_server(real_library, guards=options(keys=KeyRing.single("k3y"))) as srv:
        assert httpx.get(srv.url + "/metrics", timeout=WAIT).status_code == 401
        samples = scrape(srv, headers={"Authorization": "Bearer k3y"})
        assert value(samples, "corral_requests_total", model="", route="/metrics", status="401") == 1
