"""The ``local`` engine: every step's work in this process (see :class:`clusterclip.engines.Engine`)."""

from __future__ import annotations

from . import Engine


class LocalEngine(Engine):
    name = "local"

    def encoder(self, settings, *, make, given=None, log=None):
        return given if given is not None else make(settings)

    def embed_parts(self, readers, settings, encoder, writer, partition, *, done_parts, progress):
        from .local_embed import run_local

        return run_local(readers, settings, encoder, writer, partition, done_parts=done_parts, progress=progress)

    def verify_parts(self, emb, settings) -> None:
        emb.verify(only=set(emb.parts))

    def assign(self, store, centroids, settings, *, kernel, block_rows, gpu, progress):
        return kernel(store, centroids, chunk_rows=settings.chunk_rows, gpu=gpu, check=True, progress=progress)

    def build_token_store(self, emb, doc_ids, n_docs, tok, path, settings, *, progress):
        from ..tokens.build import build_token_store

        emb.check_corpus(rehash=settings.rehash_inputs, progress=progress)  # before the tokenizer's bar starts
        # a callable: when the fast tokenizer's check fails late, the store restarts on tokenizers by itself
        return build_token_store(lambda: emb.texts(doc_ids), n_docs, tok, path, progress=progress,
                                 total=len(doc_ids), workers=settings.workers)

    def shard_runner(self, settings):
        from ..shards import write_here

        return write_here


ENGINE = LocalEngine()
