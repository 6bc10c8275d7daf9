"""clusterclip: ClusterClip Sampling for LLM training data.

Three steps, each a plain Python function with a thin CLI on top:

- :func:`clusterclip.embedding.embed_corpus` — documents → L2-normalised embeddings
- :func:`clusterclip.clustering.cluster_embeddings` — embeddings → spherical k-means clusters
- :func:`clusterclip.schedule.schedule_corpus` — clusters → ClusterClip order → token shards

The sampler itself is pure and importable: :func:`clusterclip.sampling.plan_schedule`.
"""

__version__ = "0.1.0"
