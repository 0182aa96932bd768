"""The transfer set the query encoder is distilled on: texts the language model embeds and the small
encoder learns to imitate.

Generated queries cover the catalog's own words; general phrases drawn from the language model's own
vocabulary (its whole English words) teach the encoder what words it has never seen in a title mean,
which is what lets it read the titles of items added later. Built only from training items' text.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import List, Optional, Sequence

from ..data import Item
from .queries import decade_words, genre_words, spoken_title, typed, typo


def vocabulary_words(model_dir: Optional[Path]) -> List[str]:
    """Whole ASCII words (3+ letters) of a BERT-style WordPiece vocabulary (``vocab.txt``), or [] without one."""
    vocab = Path(model_dir) / "vocab.txt" if model_dir else None
    if vocab is None or not vocab.is_file():
        return []
    return [w for w in vocab.read_text(encoding="utf-8").split("\n") if w.isascii() and w.isalpha() and len(w) >= 3]


def transfer_texts(items: Sequence[Item], rows: Sequence[int], general: int, catalog: int, words: Sequence[str],
                   seed: int = 0) -> List[str]:
    """``general`` phrases of 1-5 vocabulary words and ``catalog`` phrases mixing the training items' title
    words with vocabulary words, genre and decade words (a fifth of them with a typo); distinct, sorted."""
    rng = random.Random(seed)
    title_words = [w for r in rows for w in typed(spoken_title(items[int(r)].title)).split()]
    genres = sorted({g for r in rows for g in items[int(r)].genres})
    decades = sorted({(items[int(r)].year // 10) * 10 for r in rows if items[int(r)].year})
    vocabulary = list(words) or title_words
    out: set = set()
    limit = 20 * (general + catalog) + 1000  # small vocabularies run out of distinct phrases: stop trying
    tries = 0
    while len(out) < general and tries < limit:
        tries += 1
        out.add(" ".join(rng.choice(vocabulary) for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 5)))))
    target = len(out) + catalog
    while title_words and len(out) < target and tries < 2 * limit:
        tries += 1
        phrase = [rng.choice(title_words) if rng.random() < 0.6 else rng.choice(vocabulary)
                  for _ in range(rng.choice((1, 2, 2, 3, 4)))]
        if genres and rng.random() < 0.25:
            phrase.insert(rng.randrange(len(phrase) + 1), rng.choice(genre_words(rng.choice(genres))))
        if decades and rng.random() < 0.1:
            phrase.append(rng.choice(decade_words(rng.choice(decades))))
        text = " ".join(phrase)
        out.add(typo(text, rng) if rng.random() < 0.2 else text)
    return sorted(out)
