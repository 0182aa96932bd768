"""Train the SentencePiece tokenizer the device uses to read queries."""
from __future__ import annotations

import io
from typing import Iterable


def train_tokenizer(corpus: Iterable[str], vocab_size: int, model_type: str = "unigram", seed_sentences: int = 400_000
                    ) -> bytes:
    """A SentencePiece model (serialized) over ``corpus`` (already normalised text). Piece 0 is the unknown
    piece and there are no control pieces, as :mod:`edge_rec.query` expects; a small corpus may give
    fewer than ``vocab_size`` pieces (the manifest records the real size)."""
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=vocab_size,
                                   model_type=model_type, hard_vocab_limit=False, character_coverage=1.0,
                                   normalization_rule_name="identity", unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
                                   input_sentence_size=seed_sentences, shuffle_input_sentence=True, num_threads=2,
                                   minloglevel=2)
    return buf.getvalue()
