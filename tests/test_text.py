"""The offline MiniLM text encoder and its on-disk cache."""
import numpy as np
import pytest

from converter.text import DIM, EmbeddingCache, TextEncoder, text_key

TEXTS = ["Toy Story (1995). Genres: Animation, Children's, Comedy.",
         "Toy Story 2 (1999). Genres: Animation, Children's, Comedy.",
         "Schindler's List (1993). Genres: Drama, War."]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    enc = TextEncoder(cache_dir=cache)
    return cache, enc, enc.encode(TEXTS)


def test_real_embeddings_are_unit_and_meaningful(vectors):
    _, _, v = vectors
    assert v.shape == (3, DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # the two Toy Story films are closer than Schindler's List


def test_cache_hits_skip_the_model(vectors):
    cache, enc, v = vectors
    fresh = TextEncoder(cache_dir=cache)
    np.testing.assert_array_equal(fresh.encode(TEXTS), v)
    assert fresh._model is None, "all texts were cached: the language model must not be loaded"
    assert len(EmbeddingCache(cache, enc.fingerprint)) == 3


def test_only_new_texts_are_embedded(vectors):
    cache, enc, v = vectors
    fresh = TextEncoder(cache_dir=cache)
    out = fresh.encode([TEXTS[2], "Heat (1995). Genres: Action, Crime, Thriller."])
    np.testing.assert_allclose(out[0], v[2], atol=1e-6)
    assert fresh._model is not None
    assert EmbeddingCache(cache, enc.fingerprint).get(text_key("Heat (1995). Genres: Action, Crime, Thriller.")) is not None


def test_cache_is_keyed_by_model_and_survives_damage(vectors, tmp_path):
    _, enc, v = vectors
    other = EmbeddingCache(tmp_path, "another-model")
    assert other.get(text_key(TEXTS[0])) is None
    c = EmbeddingCache(tmp_path, enc.fingerprint)
    c.put([text_key(TEXTS[0])], v[:1])
    c.save()
    assert EmbeddingCache(tmp_path, enc.fingerprint).get(text_key(TEXTS[0])) is not None
    (tmp_path / f"{enc.fingerprint}.npz").write_bytes(b"not a zip")
    assert len(EmbeddingCache(tmp_path, enc.fingerprint)) == 0  # a damaged cache is rebuilt, not fatal
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        TextEncoder(model_dir=tmp_path)
