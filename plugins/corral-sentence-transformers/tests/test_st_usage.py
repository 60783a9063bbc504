"""/v1/embeddings usage counts the model's own tokens, through the real openai client."""

from __future__ import annotations


def test_embedding_usage_counts_equal_the_tokenizers(library, minilm_path):
    import openai
    from sentence_transformers import SentenceTransformer

    from corral.testing import Runtime, ServerThread

    library.import_path(minilm_path, name="minilm")
    texts = ["a cat", "a dog sat on the mat", "Tokenizers split unfamiliar words into pieces."]
    tokenizer = SentenceTransformer(str(minilm_path), device="cpu").tokenizer
    expected = sum(len(tokenizer(t)["input_ids"]) for t in texts)
    runtime = Runtime(library)
    try:
        with ServerThread(runtime) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            answer = client.embeddings.create(model="minilm", input=texts)
            assert answer.usage.prompt_tokens == answer.usage.total_tokens == expected
            single = client.embeddings.create(model="minilm", input="a cat")
            assert single.usage.prompt_tokens == len(tokenizer("a cat")["input_ids"])
            try:
                client.embeddings.create(model="minilm", input="x", extra_body={"truncate": True})
            except openai.BadRequestError as exc:
                assert "truncate" in str(exc)
            else:
                raise AssertionError("an unsupported field was accepted")
    finally:
        runtime.close()
