"""The ``embed`` step: documents -> L2-normalised embeddings (ClusterClip §1.1).

- :mod:`.settings` — :class:`EmbedSettings`, every option validated;
- :mod:`.encoder` — the :class:`Encoder` interface, device and precision; backends :mod:`.hf`
  (the default: Hugging Face model, masked mean pooling) and :mod:`.sentence_transformers`;
- :mod:`.batching` — length-sorted token-budget batches and sequence packing (free functions);
- where the parts are embedded: :mod:`clusterclip.engines` (``--engine``), through :class:`EmbedWriter`;
- :mod:`.directory` — :class:`EmbedDir` (the layout, reading a finished directory); :mod:`.store` —
  :class:`EmbeddingStore` (the embeddings as one matrix); :mod:`.writer` — :class:`EmbedWriter`;
- :mod:`.merge` — :func:`merge_embeddings`: the partitions of one job -> one directory;
- :mod:`.step` — :class:`EmbedStep`, run by the one driver (:func:`clusterclip.steps.run_step`).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from ..artifacts import StepResult
from ..steps import run_step, settings_from
from .directory import EmbedDir
from .encoder import DEFAULT_MODEL_NAME, Encoder, Prepared, make_encoder
from .settings import EmbedSettings
from .step import EmbedStep
from .store import EmbeddingStore

__all__ = ["DEFAULT_MODEL_NAME", "EmbedDir", "EmbedSettings", "EmbedStep", "EmbeddingStore", "Encoder", "Prepared",
           "embed_corpus", "make_encoder", "merge_embeddings"]


def embed_corpus(inputs: Sequence | str | os.PathLike, out_dir, settings: EmbedSettings | None = None, *,
                 overwrite: bool = False, progress: bool = True, encoder: Encoder | None = None,
                 log: Callable[[str], None] | None = None, **kwargs) -> StepResult:
    """Embed a corpus into ``out_dir`` (``docs.parquet``, ``embeddings-*.npy``, ``manifest.json``).

    ``inputs``: files, directories or globs. Settings come as an :class:`EmbedSettings` or as its
    fields in keyword arguments. A rerun of the same call after an interruption resumes after the
    last finished part; after success it does nothing (``result.state == "done"``). ``encoder``
    reuses a loaded encoder, which must agree with any encoder setting given explicitly.
    """
    s = settings_from(settings, kwargs, EmbedSettings)
    step = EmbedStep(inputs, s, encoder=encoder, progress=progress, log=log)
    return run_step(step, out_dir, overwrite=overwrite)


def merge_embeddings(*args, **kwargs) -> StepResult:
    from .merge import merge_embeddings as merge

    return merge(*args, **kwargs)
