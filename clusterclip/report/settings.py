"""Settings of ``clusterclip report`` and ``clusterclip clusters`` (see their ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..schedule.settings import DEFAULT_MAX_REPEATS, MAX_REPEATS_LIMIT
from ..settings import Settings, setting
from .table import DEFAULT_MAX_SAMPLE_DOCS, DEFAULT_SAMPLE_DOCS

DEFAULT_MAX_TABLE_CLUSTERS = 1000
MAP_METHODS = ("auto", "pca", "umap")


def _sample_docs():
    return setting(DEFAULT_SAMPLE_DOCS, flag="--sample-docs", kind=int, min=1, group="show",
                   help="Keywords come from a seeded random sample of at most this many documents per cluster.")


@dataclass(frozen=True)
class ReportSettings(Settings):
    """What ``report`` shows; its :meth:`record` is the report manifest's ``settings``."""

    step = "report"

    sample_docs: int = _sample_docs()
    max_sample_docs: int = setting(DEFAULT_MAX_SAMPLE_DOCS, flag="--max-sample-docs", kind=int, min=1, group="show",
                                   help="...and at most this many documents in all (fewer per cluster when K is "
                                        "large), so the report's time and memory stay bounded whatever the corpus "
                                        "size.")
    max_table_clusters: int = setting(DEFAULT_MAX_TABLE_CLUSTERS, flag="--max-table-clusters", kind=int, min=1,
                                      group="show", help="The table lists at most this many clusters, the largest.")
    max_repeats: int = setting(DEFAULT_MAX_REPEATS, flag="--max-repeats", kind=int, min=1, max=MAX_REPEATS_LIMIT,
                               group="show",
                               help="Without SCHED: the clip of the expected clusterclip mix drawn for one epoch "
                                    "(with a clusterclip SCHED its own settings are used); as schedule's "
                                    "--max-repeats.")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="show",
                        help="Seed of the keyword sample (and of UMAP).")
    map: str = setting("auto", flag="--map", kind=str, choices=MAP_METHODS, group="show",
                       help="2-D map of the centroids: auto is UMAP when the `umap` package is installed, else PCA.")
    runs: str | None = setting(None, flag="--runs", kind=str, optional=True, record=False, group="input",
                               metavar="RUNS",
                               help="A `clusterclip proxy` directory of these clusters: add the held-out loss per "
                                    "cluster of each schedule (mean and spread over seeds) and the loss curves.")
    fit: str | None = setting(None, flag="--fit", kind=str, optional=True, record=False, group="input",
                              metavar="FIT",
                              help="A `clusterclip fit` directory: add each schedule's measured loss against the "
                                   "fit's leave-one-out prediction.")
    group_by: str | None = setting(None, flag="--group-by", kind=str, optional=True, group="show", metavar="COLUMN",
                                   help="Add up the documents by COLUMN (a column of EMB/docs.parquet such as "
                                        "source, or of the corpus, such as a product or language field): a table "
                                        "of the groups and, with SCHED, their share over training, tokens and "
                                        "planned vs realised.")


@dataclass(frozen=True)
class ClustersSettings(Settings):
    """What ``clusterclip clusters`` prints."""

    step = "clusters"

    emb: str | None = setting(None, flag="--emb", kind=str, optional=True, group="input", metavar="PATH",
                              help="The embed directory CL was clustered from, for keywords and example documents "
                                   "[default: the one recorded in CL/manifest.json, if it is still there "
                                   "unchanged].")
    schedule: str | None = setting(None, flag="--schedule", kind=str, optional=True, group="input", metavar="SCHED",
                                   help="A schedule directory made from CL: add its samples and tokens per cluster "
                                        "(tokens, share of its tokens, mean tokens per sample; tokens need a "
                                        "schedule that counted them: a --tokenizer).")
    show: int | None = setting(None, flag="--show", kind=int, optional=True, group="show", metavar="K",
                               help="Print cluster K in full: keywords and the documents nearest its centroid and at "
                                    "its edge.")
    certificate: bool = setting(False, flag="--certificate", kind=bool, group="show",
                                help="With --schedule: print its mixture certificate instead of the table: planned "
                                     "vs realised samples and tokens per cluster (whole run, per tenth, per "
                                     "stage), effective epochs, uses per document, the largest gap between a "
                                     "cluster's samples, and the sha256 of every file it was computed from.")
    json: bool = setting(False, flag="--json", kind=bool, group="show", help="Print JSON instead of text.")
    sample_docs: int = _sample_docs()
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="show",
                        help="Seed of the keyword sample.")
