"""Settings of the ``cluster`` step (see ``clusterclip cluster --help``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..settings import Settings, setting
from .assignment import DEFAULT_CHUNK_ROWS
from .kmeans import DEFAULT_INIT, DEFAULT_ITERS, INIT_POINTS_PER_CENTROID, INITS, POINTS_PER_CENTROID, check_device_name


@dataclass(frozen=True)
class ClusterSettings(Settings):
    step = "cluster"

    k: int | None = setting(None, flag="--k", kind=int, min=1, max=1 << 30, optional=True, group="clustering",
                            help="Number of clusters (the paper: 2000 for its corpus; a few hundred to a few "
                                 "thousand documents per cluster is typical). Required, except with --assign-only "
                                 "(the centroids' own k).")
    iters: int = setting(DEFAULT_ITERS, flag="--iters", kind=int, min=1, max=100_000, group="clustering",
                         help="k-means iterations (the reference code uses 300; from a greedy k-means++ start "
                              "spherical k-means has converged to 0.01% by 10, see docs/PERFORMANCE.md).")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="clustering",
                        help="Seed of the training sample and of the centroid initialisation.")
    max_train_points: int | None = setting(
        None, flag="--max-train-points", kind=int, min=1, optional=True, group="clustering",
        help=f"Train on at most this many documents, drawn uniformly at random [default: {POINTS_PER_CENTROID} x k]; "
             f"every document is assigned in any case.")
    init: str = setting(DEFAULT_INIT, flag="--init", kind=str, choices=INITS, group="clustering",
                        help=f"Initial centroids: greedy-kmeans++ (scikit-learn's KMeans seeding, on a sample of "
                             f"{INIT_POINTS_PER_CENTROID} x k documents), random documents (the paper), or faiss's "
                             f"kmeans++ / afkmc2.")
    levels: int = setting(1, flag="--levels", kind=int, min=1, max=2, group="clustering",
                          help="2: also cluster the centroids into --k2 groups (hierarchical k-means, Vo et al. "
                               "2024); clusters.parquet gets a `parent` column.")
    k2: int | None = setting(None, flag="--k2", kind=int, min=1, optional=True, group="clustering",
                             help="Second-level clusters with --levels 2 [default: about sqrt(k)].")
    device: str = setting("auto", flag="--device", kind=str, group="performance",
                          help="auto (the GPU when faiss-gpu sees one, else the CPU), cpu, cuda or cuda:N.")
    # how it runs, not what it computes (kept out of the job's identity)
    chunk_rows: int = setting(DEFAULT_CHUNK_ROWS, flag="--chunk-rows", kind=int, min=1, record=False,
                              group="performance",
                              help="Embedding rows held in memory at once while assigning (does not change the "
                                   "result).")
    threads: int | None = setting(None, flag="--threads", kind=int, min=1, max=4096, optional=True, record=False,
                                  group="performance",
                                  help="CPU threads for faiss [default: all cores]. Results are bit-identical for "
                                       "the same thread count and CPU; pin it to reproduce a run from another "
                                       "machine of the same kind.")
    # assign to the centroids of an existing cluster directory instead of training (its path is in the inputs)
    assign_only: str | None = setting(None, flag="--assign-only", kind=str, optional=True, record=False,
                                      group="clustering", metavar="CL_OLD",
                                      help="Train nothing: assign every document of EMB to the centroids of the "
                                           "cluster directory CL_OLD (checked by sha256; EMB must be CL_OLD's embed "
                                           "output or built from it with `embed --incremental`, or of the same "
                                           "model). --k may be left out. The manifest records CL_OLD.")
    engine: str = engine_setting("the assignment pass (training stays here)")
    ray_address: str | None = ray_address_setting()

    def validate(self) -> None:
        check_engine(self)  # e.g. Ray refuses --device cuda:N (every task runs on the GPU Ray gives it)
        check_device_name(self.device)
        if self.k is None and self.assign_only is None:
            raise InputError("--k: required; give the number of clusters (or --assign-only CL_OLD to reuse its "
                             "centroids)")
        if self.assign_only is not None:
            defaults = {f.name: f.default for f in fields(self)}
            for name, flag in (("iters", "--iters"), ("seed", "--seed"), ("max_train_points", "--max-train-points"),
                               ("init", "--init"), ("levels", "--levels"), ("k2", "--k2")):
                if getattr(self, name) != defaults[name]:
                    raise InputError(f"{flag}: not used with --assign-only (the centroids of {self.assign_only} are "
                                     f"used as they are, levels included); leave it out")
        if self.levels == 1 and self.k2 is not None:
            raise InputError("--k2: only used with --levels 2; add --levels 2 or drop --k2")
        if self.k is None:  # --assign-only: the levels and k of CL_OLD
            return
        if self.k2 is not None and self.k2 > self.k:
            raise InputError(f"--k2 {self.k2}: the second level needs between 1 and --k ({self.k}) clusters")
        if self.max_train_points is not None and self.max_train_points < self.k:
            raise InputError(f"--max-train-points {self.max_train_points}: must be at least --k ({self.k})")
