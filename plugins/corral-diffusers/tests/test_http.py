"""`/v1/images/generations` (b64_json) served by `corral serve` with this plugin, and `corral imagine`
going to the running server."""

from __future__ import annotations

import base64
import io

import pytest

from tiny_pipelines import same
from corral.testing import open_model

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")


@pytest.fixture
def server(library):
    from corral.testing import Runtime
    from corral.testing import ServerThread

    runtime = Runtime(library)
    with ServerThread(runtime, state=True) as srv:
        yield srv
    runtime.close()


def test_images_over_http_equal_in_process_ones(server, library, flux, run, tmp_path):
    from PIL import Image

    model = library.import_path(flux.folder, name="tiny-flux").model
    with open_model(library, model.id) as handle:
        expected = handle.imagine("a red square", steps=2, width=32, height=16, seed=4)[0]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    answer = client.images.generate(model="tiny-flux", prompt="a red square", size="32x16",
                                    extra_body={"seed": 4, "steps": 2})
    image = Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json)))
    assert image.format == "PNG" and same(image, expected)
    bad = httpx.post(server.url + "/v1/images/generations", timeout=60,
                     json={"model": "tiny-flux", "prompt": "x", "size": "31x16"})
    assert bad.status_code == 400 and "multiples of 2" in bad.json()["error"]["message"]
    out = tmp_path / "via-server.png"
    result = run("imagine", "tiny-flux", "a red square", "--size", "32x16", "--steps", "2", "--seed", "4",
                 "--out", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as written:
        assert same(written, expected)
