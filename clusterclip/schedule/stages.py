"""``--stages FILE`` (or ``[[schedule.stage]]`` tables in ``--config``): a schedule that changes law at points
of its budget.

A stages file is TOML, YAML or JSON holding a list of tables under ``stage`` (``[[stage]]`` in TOML; a
config file's ``[[schedule.stage]]`` also works, and a JSON file may be the bare list). Each table says
where its stage ends (at most one of ``until``: a fraction of the budget in (0, 1]; ``until_sample``: a
sample count; ``until_tokens``: a token count; the last stage may leave it out and runs to the end) and
any of the sampling options below; an option a stage leaves out is the schedule's own (flag or config).
File paths (``weights``) are read as given, relative to the working directory, as ``--weights`` is.

:func:`read_stage_tables` reads and checks the file (one line per mistake, nothing written);
:func:`stage_laws` turns the tables into :class:`.law.Stage` objects for the sampler, and the record of
every stage for the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .law import SamplingLaw, Stage

#: the options a stage may set (a stage's own, over the schedule's)
STAGE_OPTIONS = ("sampler", "alpha", "balance", "max_repeats", "weights", "cluster_max_repeats", "doc_weight_power")
#: where a stage ends: its key in the file -> the :class:`.law.Stage` field
STAGE_ENDS = {"until": "until", "until_sample": "until_samples", "until_tokens": "until_tokens"}
_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


@dataclass(frozen=True)
class StageTable:
    """One stage as the file gives it: where it ends and the options it sets (checked by their rules)."""

    end: dict[str, Any]
    options: dict[str, Any]


def read_stage_tables(path: str | Path) -> list[StageTable]:
    """The stages of ``--stages FILE``, each key checked by the rule of its option."""
    p = Path(path)
    tables = _stage_list(p, _load(p))
    return [_checked_table(p, i, len(tables), t) for i, t in enumerate(tables)]


def _load(p: Path) -> Any:
    from .mixing import check_table_path

    if p.suffix.lower() not in _SUFFIXES:
        raise InputError(f"--stages {p}: unknown format; use a .toml, .yaml, .yml or .json file")
    check_table_path(p, "--stages")
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(f"--stages {p}: cannot read it as UTF-8 text; check the file") from None
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        if p.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parser's error is the file's syntax
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--stages {p}: invalid {p.suffix.lstrip('.').upper()} ({first}); fix its syntax") from None


def _stage_list(p: Path, data: Any) -> list:
    """The list of stage tables: ``stage`` at the top, ``schedule.stage`` (a config file), or a bare JSON list."""
    if isinstance(data, dict):
        found = data.get("stage")
        if found is None and isinstance(data.get("schedule"), dict):
            found = data["schedule"].get("stage")
        data = found
    if not isinstance(data, list) or not data:
        raise InputError(f"--stages {p}: no stages; give a list of [[stage]] tables (or [[schedule.stage]] in a "
                         f"config file), each with its end (until = 0.25) and its options")
    return data


def _checked_table(p: Path, i: int, n: int, table: Any) -> StageTable:
    from .settings import ScheduleSettings

    where = f"--stages {p}: stage {i + 1} of {n}"
    if not isinstance(table, dict):
        raise InputError(f"{where}: must be a table of options, got {table!r}")
    table = {str(k).replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(set(table) - set(STAGE_OPTIONS) - set(STAGE_ENDS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; a stage takes "
                         f"{', '.join(STAGE_ENDS)} and {', '.join(STAGE_OPTIONS)}")
    ends = {k: table[k] for k in STAGE_ENDS if k in table}
    if len(ends) > 1:
        raise InputError(f"{where}: ends at one point; give one of {', '.join(ends)}")
    if not ends and i < n - 1:
        raise InputError(f"{where}: has no end; give until (a fraction of the budget), until_sample or "
                         f"until_tokens (only the last stage runs to the end of the budget)")
    rules = {f.name: f.metadata["rule"] for f in fields(ScheduleSettings) if "rule" in f.metadata}
    options = {k: rules[k].check(table[k], subject=f"{where}: {k} = {table[k]!r}", fix="; fix the stages file")
               for k in STAGE_OPTIONS if k in table}
    return StageTable({STAGE_ENDS[k]: _end_value(where, k, v) for k, v in ends.items()}, options)


def _end_value(where: str, key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: {key} = {value!r} must be a number; fix the stages file")
    if key == "until":
        if not (np.isfinite(value) and 0 < value <= 1):
            raise InputError(f"{where}: until = {value!r} is a fraction of the budget in (0, 1]; use until_sample "
                             f"or until_tokens for counts")
        return float(value)
    if not isinstance(value, int) or value < 1:
        raise InputError(f"{where}: {key} = {value!r} must be a whole number >= 1; fix the stages file")
    return int(value)


@dataclass(frozen=True)
class StagedLaws:
    """The stages for the sampler and what the manifest records of each."""

    stages: list[Stage]
    record: list[dict]

    @property
    def needs_lengths(self) -> bool:
        return any(s.law.balance == "tokens" or s.until_tokens is not None for s in self.stages)


def stage_laws(tables: list[StageTable], defaults: dict[str, Any], n_clusters: int, *, doc_scores=None,
               keep=None, has_tokenizer: bool = True) -> StagedLaws:
    """Every stage's :class:`.law.SamplingLaw`: the stage's options over ``defaults`` (the schedule's own
    ``sampler``, ``alpha``, ``balance``, ``max_repeats``, ``weights``, ``cluster_max_repeats``,
    ``doc_weight_power``), its weights file read (and its digest recorded)."""
    from .mixing import file_digest, parse_cluster_repeats, read_cluster_table

    stages, record = [], []
    for i, table in enumerate(tables):
        where = f"--stages: stage {i + 1} of {len(tables)}"
        o = {**defaults, **table.options}
        if o["sampler"] == "random" and len(tables) > 1:
            raise InputError(f"{where}: the random sampler draws no clusters and cannot be one stage of several; "
                             f"use sampler = \"uniform\" with alpha = 1 (drawn in proportion to size)")
        if o["balance"] == "tokens" and not has_tokenizer:
            raise InputError(f"{where}: balance = \"tokens\" needs --tokenizer to count every document's tokens, "
                             f"even with --dry-run")
        if "doc_weight_power" in table.options and doc_scores is None:
            raise InputError(f"{where}: doc_weight_power sharpens the scores of --doc-weight-column, which is not "
                             f"given; give --doc-weight-column or leave doc_weight_power out")
        weights = repeats = None
        digest = None
        if o["weights"] is not None:
            weights, file_repeats = read_cluster_table(o["weights"], n_clusters)
            repeats = file_repeats if np.any(file_repeats) else None
            digest = file_digest(o["weights"])
        if o["cluster_max_repeats"] is not None:
            repeats = parse_cluster_repeats(o["cluster_max_repeats"], n_clusters, repeats)
        clipped = o["sampler"] == "clusterclip"
        if repeats is not None and not clipped:
            raise InputError(f"{where}: per-cluster clips (cluster_max_repeats, or max_repeats in its weights "
                             f"file) need sampler = \"clusterclip\"")
        try:
            law = SamplingLaw(sampler=o["sampler"], max_repeats=o["max_repeats"], alpha=o["alpha"],
                              balance=o["balance"], cluster_weights=weights, cluster_max_repeats=repeats,
                              doc_scores=doc_scores, doc_power=o["doc_weight_power"], keep=keep)
        except ValueError as e:
            raise InputError(f"{where}: {e}; fix the stages file") from None
        stages.append(Stage(law, **table.end))
        record.append({**table.end, **{k: o[k] for k in STAGE_OPTIONS}, "weights_digest": digest})
    return StagedLaws(stages, record)


__all__ = ["STAGE_ENDS", "STAGE_OPTIONS", "StageTable", "StagedLaws", "read_stage_tables", "stage_laws"]
