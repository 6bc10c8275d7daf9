#!/usr/bin/env python
"""Train the demo's LLM-style tokenizer offline: a GPT-2-style byte-level BPE.

It is trained on the demo corpus with the `tokenizers` library and saved as a
single ``tokenizer.json`` whose ``<|endoftext|>`` token is the EOS that
``clusterclip schedule`` appends to every sample. Any real LLM tokenizer (a
``tokenizer.json``, a local Hugging Face directory or a hub name) works the same way.

    python scripts/train_demo_tokenizer.py demo/corpus.jsonl.gz --out demo/tokenizer.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOS = "<|endoftext|>"


def iter_texts(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def train_bpe(texts, vocab_size: int, special_tokens=(EOS,)) -> Tokenizer:
    """A GPT-2-style byte-level BPE trained on ``texts`` (an iterable of strings)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train(corpus: Path, vocab_size: int) -> Tokenizer:
    """The demo tokenizer: :func:`train_bpe` on the ``text`` field of a JSONL corpus."""
    return train_bpe(iter_texts(corpus), vocab_size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="JSONL corpus (optionally .gz) with a 'text' field")
    ap.add_argument("--out", type=Path, required=True, help="where to write tokenizer.json")
    ap.add_argument("--vocab-size", type=int, default=8192)
    args = ap.parse_args(argv)
    tok = train(args.corpus, args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, args.out)
    print(f"wrote {args.out} (vocab {tok.get_vocab_size()}, EOS {EOS!r} = {tok.token_to_id(EOS)})")


if __name__ == "__main__":
    main()
