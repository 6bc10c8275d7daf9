"""Small things a newcomer reads (issue 26 item 8): the missing-EOS error suggests the tokenizer's real end
token first, and embed's summary says what to do when most documents were cut at --max-length."""

from __future__ import annotations

import json

import pytest

from clusterclip.embed.step import truncation_hint
from clusterclip.errors import InputError
from clusterclip.tokens.tokenizer import load_tokenizer

from helpers import invoke, write_jsonl


def _deepseek_like(path, specials=True):
    """A tokenizer.json like DeepSeek-LLM's: no EOS spelling we know, a vocabulary holding ``<>`` and
    ``<=>``, special tokens ``<｜begin▁of▁sentence｜>`` / ``<｜end▁of▁sentence｜>`` / a fill-in-the-middle one."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    vocab = {"<>": 0, "<=>": 1, "[UNK]": 2, "a": 3, "b": 4, "<x>": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    names = ["<｜fim▁hole｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]
    if specials:
        tok.add_special_tokens([AddedToken(n, special=True) for n in names])
    tok.save(str(path))
    return path


def test_the_missing_eos_error_suggests_the_real_end_token_first(tmp_path):
    path = _deepseek_like(tmp_path / "tokenizer.json")
    with pytest.raises(InputError) as e:
        load_tokenizer(path)
    message = str(e.value)
    assert "has no EOS token" in message and "'<>'" not in message and "'<=>'" not in message
    suggested = message.split("(e.g. ")[1]
    assert suggested.startswith("'<｜end▁of▁sentence｜>'"), message
    with pytest.raises(InputError, match=r"--eos-token 'nope': .*\(e\.g\. '<｜end▁of▁sentence｜>'"):
        load_tokenizer(path, eos_token="nope")
    assert load_tokenizer(path, eos_token="<｜end▁of▁sentence｜>").eos_token == "<｜end▁of▁sentence｜>"


def test_without_special_tokens_the_suggestion_looks_like_a_special_token_not_punctuation(tmp_path):
    path = _deepseek_like(tmp_path / "tokenizer.json", specials=False)
    with pytest.raises(InputError) as e:
        load_tokenizer(path)
    assert "(e.g. '<x>')" in str(e.value)


@pytest.mark.parametrize("truncated, backend, long_docs, expected", [
    (60, "hf", "truncate", "(60 %: only their first 32 tokens are embedded; --long-docs chunk-mean embeds all of each)"),
    (60, "model2vec", "truncate", "--long-docs chunk-mean"),
    (60, "sentence-transformers", "truncate", "raise --max-length"),
    (50, "hf", "truncate", ""),
    (100, "hf", "chunk-mean", ""),
])
def test_the_truncation_line_points_to_chunk_mean_when_most_documents_are_cut(truncated, backend, long_docs, expected):
    hint = truncation_hint({"n_docs": 100, "truncated_docs": truncated},
                           {"backend": backend, "long_docs": long_docs, "max_length": 32})
    assert (expected in hint) if expected else hint == ""


def test_embed_summary_of_a_mostly_truncated_corpus(tmp_path, small_docs):
    corpus = write_jsonl(tmp_path / "c.jsonl", small_docs[:12])
    code, output = invoke(["embed", corpus, "--out", tmp_path / "emb", "--max-length", 8])
    assert code == 0, output
    line = [x for x in output.splitlines() if x.startswith("embed: 12 docs")][0]
    assert "12 truncated at --max-length 8 (100 %: only their first 8 tokens are embedded; --long-docs chunk-mean" \
        in line, line
    assert json.loads((tmp_path / "emb" / "manifest.json").read_text())["statistics"]["truncated_docs"] == 12
