"""Slots in the runtime and the server: a model loaded with ``parallel`` N runs N requests at once, 50
more wait, the next is refused at once with 503 and Retry-After; ``ps``, ``/corral/status`` and ``/metrics``
show it."""

from __future__ import annotations

import threading

import httpx
import pytest

from corral.api import QueueFull
from corral.testing import driver_for

FAST = {"threads": 1, "n_ctx": 256}
WAIT = 60


@pytest.fixture
def runtime(library):
    from corral.testing import Runtime

    rt = Runtime(library, keep_alive=None)
    yield rt
    rt.close()


def metrics(server) -> dict:
    """``{(sample name, model): value}`` of one ``/metrics`` scrape, read with prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(server.url + "/metrics", timeout=WAIT)
    assert answer.status_code == 200
    return {(s.name, s.labels.get("model")): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def test_parallel_running_plus_fifty_waiting_then_503(library, tiny, runtime):
    from corral.testing import ServerThread

    library.update_settings(tiny.name, {**FAST, "parallel": 2})
    running = [runtime.enter(tiny.name, "complete") for _ in range(2)]
    entry = running[0][0]
    assert all(turn.granted for _, turn in running)  # both at once: the model has 2 slots
    assert entry.settings["parallel"] == 2 and entry.handle.parallel == 2
    waiting = [runtime.enter(tiny.name, "complete")[1] for _ in range(50)]
    assert not any(turn.granted for turn in waiting)
    with pytest.raises(QueueFull, match="2 requests running and 50 waiting") as refused:
        runtime.enter(tiny.name, "complete")
    assert refused.value.retry_after >= 1
    (info,) = runtime.ps()
    assert (info.running, info.parallel, info.waiting, info.driver) == (2, 2, 50, "llama-server")

    with ServerThread(runtime) as server:
        answer = httpx.post(server.url + "/v1/completions", json={"model": tiny.name, "prompt": "hi", "max_tokens": 2},
                            timeout=WAIT)
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
        status = httpx.get(server.url + "/corral/status", timeout=WAIT).json()
        queue = status["queues"][tiny.name]
        assert (queue["running"], queue["parallel"], queue["waiting"]) == (2, 2, 50)
        ps = httpx.get(server.url + "/corral/ps", timeout=WAIT).json()["models"][0]
        assert (ps["running"], ps["parallel"], ps["waiting"]) == (2, 2, 50)
        assert ps["driver"] == "llama-server"
        scraped = metrics(server)
        assert scraped[("corral_queue_running", tiny.name)] == 2
        assert scraped[("corral_queue_waiting", tiny.name)] == 50
        assert scraped[("corral_queue_rejected_total", tiny.name)] == 2  # the refusals above

        # Releasing one running request lets the first waiting one in; the rest stay in order.
        running[0][1].release()
        assert waiting[0].granted and not waiting[1].granted
        for _, turn in running[1:]:
            turn.release()
        for turn in waiting:
            turn.wait(WAIT)
            turn.release()
        # Greedy, so the random-weight model cannot happen to pick its end token first.
        answer = httpx.post(server.url + "/v1/completions", timeout=WAIT,
                            json={"model": tiny.name, "prompt": "hi", "max_tokens": 2, "temperature": 0, "seed": 1})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 2


def test_requests_run_together_through_the_runtime(library, tiny, runtime):
    """A model with two slots grants two turns at once, and both requests are served in them."""
    library.update_settings(tiny.name, {**FAST, "parallel": 2})
    results: dict[int, object] = {}
    inside, finished, leave = (threading.Barrier(3, timeout=WAIT) for _ in range(3))

    def ask(i: int) -> None:
        with runtime.turn(tiny.name, "complete", timeout=WAIT) as entry:
            inside.wait()  # both turns granted before either request is sent
            results[i] = entry.handle.complete("hello", temperature=0, seed=i, max_tokens=8)
            finished.wait()
            leave.wait()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()
    finished.wait()
    assert runtime.find(tiny.name).queue.running == 2
    leave.wait()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(results) == [0, 1] and all(0 < r.completion_tokens <= 8 for r in results.values())
    assert runtime.find(tiny.name).queue.served == 2


def test_a_driver_without_slots_keeps_one_at_a_time(library, tiny, runtime):
    library.update_settings(tiny.name, {**FAST, "parallel": 1})
    entry, turn = runtime.enter(tiny.name, "complete")
    assert entry.queue.slots == 1 and turn.granted
    second = runtime.enter(tiny.name, "complete")[1]
    assert not second.granted
    turn.release()
    assert second.granted
    second.release()


def test_driver_setting_picks_this_driver_over_llamacpp(tmp_path, tiny_path):
    """With corral-llamacpp installed too, it serves GGUF chat unless the model's ``driver`` setting names
    this one; ``corral show`` and ``/v1/models`` say which driver serves it."""
    corral_llamacpp = pytest.importorskip("corral_llamacpp")
    import corral_llama_server
    from click.testing import CliRunner

    from corral.testing import Runtime, ServerThread, as_json, build_cli, installed_host, open_library

    with installed_host(corral_llamacpp, corral_llama_server) as host:
        library = open_library(tmp_path / "home", host)
        model = library.import_path(tiny_path).model
        assert driver_for(library.host, model).name == "llamacpp"
        library.update_settings(model.name, {"driver": "llama-server", **FAST})
        assert driver_for(library.host, library.store.get_model(model.name)).name == "llama-server"
        shown = as_json(CliRunner(env={"CORRAL_HOME": str(tmp_path / "home")}).invoke(
            build_cli(), ["show", model.name, "--json"]))
        assert shown["driver"] == "llama-server"
        runtime = Runtime(library, keep_alive=None)
        with ServerThread(runtime) as server:
            cards = httpx.get(server.url + "/v1/models", timeout=WAIT).json()["data"]
            assert [(c["id"], c["driver"]) for c in cards] == [(model.name, "llama-server")]
            answer = httpx.post(server.url + "/v1/completions", timeout=WAIT,
                                json={"model": model.name, "prompt": "hi", "max_tokens": 2, "seed": 1})
            assert answer.status_code == 200
            assert runtime.ps()[0].driver == "llama-server"
        library.update_settings(model.name, {"driver": "nonesuch"})
        with pytest.raises(Exception, match="driver setting names 'nonesuch'.*drivers that can: llamacpp, llama-server"):
            driver_for(library.host, library.store.get_model(model.name))
        library.store.close()


def test_logprobs_response_format_and_tools_pass_the_servers_field_check(library, tiny, runtime):
    """The fields this driver honours reach it from the openai client (the server refuses a field a driver
    does not declare, naming it). (The JSON a schema makes is checked on the real Gemma: llguidance cannot
    walk the random tiny vocabulary; tool calls in test_llama_server_tools.py.)"""
    openai = pytest.importorskip("openai")
    from corral.testing import ServerThread

    library.update_settings(tiny.name, {**FAST, "parallel": 2})
    with ServerThread(runtime) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=WAIT)
        ask = {"model": tiny.name, "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "seed": 1}
        scored = client.chat.completions.create(**ask, max_tokens=4, logprobs=True, top_logprobs=2)
        content = scored.choices[0].logprobs.content
        assert len(content) == scored.usage.completion_tokens == 4
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
        shaped = client.chat.completions.create(**ask, max_tokens=4, response_format={"type": "json_object"})
        assert shaped.choices[0].message.role == "assistant"
        completed = httpx.post(server.url + "/v1/completions", timeout=WAIT, json={
            "model": tiny.name, "prompt": "hi", "max_tokens": 4, "response_format": {"type": "json_object"}})
        assert completed.status_code == 200, completed.text
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        offered = client.chat.completions.create(**ask, max_tokens=4, tools=tools, tool_choice="none",
                                                 reasoning_effort="low")  # tools described would not fit
        assert offered.choices[0].finish_reason in ("stop", "length", "tool_calls")
