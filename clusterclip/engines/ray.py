"""The ``ray`` engine: each step's parallel work as Ray tasks and actors (see :class:`clusterclip.engines.Engine`).

The pieces live beside it: :mod:`.ray_embed` (a Ray Data pipeline), :mod:`.ray_cluster` (the
checks and the assignment pass), :mod:`.ray_schedule` (tokenizing and shard writing), all on
:mod:`.ray_session` (joining Ray, running tasks, one-line errors). Nothing here is imported
unless ``--engine ray`` is chosen.
"""

from __future__ import annotations

from ..errors import InputError
from . import Engine


class RayEngine(Engine):
    name = "ray"
    own_options = (("ray_address", "--ray-address"), ("ray_actors", "--ray-actors"))
    refused_options = (("num_partitions", "--num-partitions"), ("limit", "--limit"))
    why_refused = "Ray spreads the whole corpus over the cluster"

    def preflight(self, settings) -> None:
        from .ray_session import preflight

        preflight(settings.ray_address)

    def encoder(self, settings, *, make, given=None, log=None):
        from .ray_embed import ray_encoder

        if given is not None:
            raise InputError("embed_corpus: with engine='ray' the encoder is built on the workers; leave encoder= out")
        return ray_encoder(settings, make, log)

    def embed_parts(self, readers, settings, encoder, writer, partition, *, done_parts, progress):
        from .ray_embed import run_ray

        return run_ray(readers, settings, encoder, writer, partition, done_parts=done_parts, progress=progress)

    def verify_parts(self, emb, settings) -> None:
        from .ray_cluster import verify_parts

        verify_parts(emb, settings)

    def assign(self, store, centroids, settings, *, kernel, block_rows, gpu, progress):
        from .ray_cluster import assign_rows

        return assign_rows(store, centroids, settings, kernel=kernel, block_rows=block_rows, gpu=gpu, progress=progress)

    def build_token_store(self, emb, doc_ids, n_docs, tok, path, settings, *, progress):
        from .ray_schedule import tokenize_on_ray

        return tokenize_on_ray(emb, doc_ids, n_docs, tok, path, settings, progress=progress)

    def shard_runner(self, settings):
        from .ray_schedule import shard_runner

        return shard_runner(settings)


ENGINE = RayEngine()
