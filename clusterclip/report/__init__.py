"""See what the clusters and the schedule are: the HTML report and the cluster table.

Public API:

- :func:`build_report` ``(emb_dir, cl_dir, sched_dir=None, out_dir="report", ...) -> Path``: writes
  ``out_dir/index.html`` (self-contained), ``figures/*.png``, ``report.json`` and ``manifest.json``.
- :func:`cluster_table` ``(cl_dir, emb_dir=None, *, clusters=None, ...) -> ClusterTable``: size, mean
  similarity and, with the embed directory, keywords and the documents nearest the centroid and
  at the edge of each cluster (what ``clusterclip clusters`` prints).

- :func:`~.certificate.certificate_of` ``(cl_dir, sched_dir) -> dict``: the schedule's mixture certificate
  (what ``clusterclip clusters CL --schedule SCHED --certificate`` prints).

Modules: :mod:`.inputs` (all reading of artifacts), :mod:`.examples` (one streaming pass over the
assignments), :mod:`.keywords` (TF-IDF), :mod:`.mix` (sampler shares), :mod:`.timeline` (one streaming
pass over ``order.parquet``: parts, uses, gaps, stages, groups), :mod:`.plan` (the schedule's law per
cluster and why the realised mix differs), :mod:`.certificate` (the certificate), :mod:`.groups`
(``--group-by``), :mod:`.figures` and :mod:`.training` (matplotlib: the mix, the schedule over training),
:mod:`.proxy` (``--runs``/``--fit`` panels), :mod:`.page` (the page's sections), :mod:`.html` (the HTML),
:mod:`.build` (the step and the output directory).
"""

from .build import build_report
from .table import ClusterRow, ClusterTable, Example, cluster_table

__all__ = ["ClusterRow", "ClusterTable", "Example", "build_report", "cluster_table"]
