"""The LLM tokenizer and the token store: each used document tokenized once, kept on disk.

- :mod:`.tokenizer` — :class:`Tokenizer`: ``--tokenizer`` loaded (a tokenizer.json, a Hugging
  Face directory or a hub name), its delimiters chosen, its identity for the manifest;
- :mod:`.fast` — the exact fast backend (gigatoken), checked against ``tokenizers``;
- :mod:`.store` — :class:`TokenStore`: the on-disk layout and its reader (and merging stores);
- :mod:`.build` — :func:`build_token_store`: tokenize into a store, in parallel, resumable.
"""
