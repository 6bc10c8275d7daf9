"""The owner of a ``fit`` directory (FIT): its layout, writing it and reading the fitted model back.

Layout::

    fit.json         the chosen model and its parameters, the target, the schedules (rows), each model's
                     leave-one-out Spearman and R², and what ``propose`` needs: the training pool's tokens
                     per cluster, the proxies' budget and clip
    points.parquet   one row per schedule: schedule, measured (mean over seeds), spread (over seeds), seeds,
                     predicted_<model> (leave-one-out) for each model fitted, then share_<k> per cluster
    model.txt        the LightGBM booster (``Booster.model_to_string``), when LightGBM is the chosen model
    manifest.json
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import write_bytes_atomic, write_json_atomic, write_parquet_atomic
from ..artifacts.directory import ArtifactDir
from ..artifacts.manifest import Stats, written
from .fit import LightGBM, LogLinear, MixtureFit

FIT_FILE = "fit.json"
POINTS_FILE = "points.parquet"
MODEL_FILE = "model.txt"


def write_fit(build: Path, fit: MixtureFit, record: dict, names: list[str], spread: np.ndarray,
              seeds: np.ndarray) -> list[str]:
    """The files of a fit into ``build``; returns their names."""
    import pyarrow as pa

    build = Path(build)
    write_json_atomic(build / FIT_FILE, {**record, **fit.record(), "schedules": names})
    columns = {"schedule": names, "measured": fit.y, "spread": np.asarray(spread, float),
               "seeds": np.asarray(seeds, np.int64)}
    columns.update({f"predicted_{m}": d["predicted"] for m, d in fit.loo.items()})
    columns.update({f"share_{k}": fit.x[:, k] for k in range(fit.x.shape[1])})
    write_parquet_atomic(build / POINTS_FILE, pa.table(columns))
    names_out = [FIT_FILE, POINTS_FILE]
    if isinstance(fit.model, LightGBM):
        write_bytes_atomic(build / MODEL_FILE, fit.model.booster.model_to_string().encode("utf-8"))
        names_out.append(MODEL_FILE)
    return names_out


@dataclass(frozen=True)
class FitStats(Stats):
    """A fit manifest's ``statistics`` (written by the fit step, read through :attr:`FitDir.stats`; see
    :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    model: str | None = written()  #: the model chosen (``loglinear``, ``lightgbm``)
    target: str | None = written()  #: the loss fitted
    points: int | None = written()  #: schedules (proxy runs' means) fitted
    measured: list[float] | None = written()  #: their target loss
    leave_one_out: dict | None = written()  #: per model, Spearman and R² of each point predicted by the others


class FitDir(ArtifactDir):
    """A finished ``fit`` directory, checked on opening; every read checks the file's sha256 first."""

    step = "fit"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = FitStats.from_json(self.statistics)

    def fit_record(self) -> dict:
        self.verify_file(FIT_FILE)
        return json.loads((self.path / FIT_FILE).read_text("utf-8"))

    def points(self) -> dict[str, np.ndarray]:
        table = self.parquet(POINTS_FILE).read()
        return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}

    def model(self) -> LogLinear | LightGBM:
        """The fitted model, ready to ``predict`` mixtures ``[n, K]``."""
        rec = self.fit_record()
        if rec["model"] == "loglinear":
            law = LogLinear()
            law.c, law.t = float(rec["parameters"]["c"]), np.asarray(rec["parameters"]["t"], float)
            return law
        import lightgbm

        self.verify_file(MODEL_FILE)
        trees = LightGBM()
        trees.booster = lightgbm.Booster(model_str=(self.path / MODEL_FILE).read_text("utf-8"))
        return trees
