"""clusterclip: ClusterClip Sampling for LLM training data.

Three steps, each a plain Python function over a validated settings object, with a thin CLI on top:

- :func:`clusterclip.embed.embed_corpus` — documents -> L2-normalised embeddings (:class:`~clusterclip.embed.EmbedDir`)
- :func:`clusterclip.cluster.cluster_embeddings` — embeddings -> spherical k-means clusters (:class:`~clusterclip.cluster.ClusterDir`)
- :func:`clusterclip.schedule.schedule_corpus` — clusters -> ClusterClip order -> token shards (:class:`~clusterclip.schedule.ScheduleDir`)

The sampler itself is pure and importable: :func:`clusterclip.schedule.sampling.plan_schedule`.
See docs/ARCHITECTURE.md for where each concern lives.
"""

__version__ = "0.2.0"
