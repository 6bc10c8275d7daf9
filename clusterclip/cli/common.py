"""Shared CLI plumbing: config files (same types as the flags), one-line errors, --quiet, notes.

Every step is a small click function that builds its settings object from the flags and calls
one library function; this module gives them ``--config``, ``--debug`` and ``--quiet``.
"""

from __future__ import annotations

import math
import os
import tomllib
import traceback
from pathlib import Path

import click

from ..artifacts import is_disk_full
from ..errors import ClusterClipError, first_line
from ..progress import progress_enabled

DEBUG_ENV = "CLUSTERCLIP_DEBUG"
QUIET_ENV = "CLUSTERCLIP_QUIET"
#: config-file tables, one per subcommand
SECTIONS = ("embed", "merge", "cluster", "schedule", "inspect", "verify", "report", "clusters")


# --------------------------------------------------------------------------- config files
def load_config(path: str | os.PathLike, section: str) -> dict:
    """Option values for ``section`` (a subcommand) from a TOML or YAML file.

    The file may hold a table per subcommand (``[embed]``, ``[cluster]``, ``[schedule]``) and/or
    top-level keys shared by all; names may use dashes or underscores (``max-length``).
    """
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise ClusterClipError(f"{p}: cannot read config file ({why}); check --config") from None
    suffix = p.suffix.lower()
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ClusterClipError(f"{p}: invalid TOML ({first_line(e)}); fix its syntax") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ClusterClipError(f"{p}: invalid YAML ({first_line(e)}); fix its syntax") from None
    else:
        raise ClusterClipError(f"{p}: unknown config format; use a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise ClusterClipError(f"{p}: a config file must hold a mapping of option names to values")
    values = {k: v for k, v in data.items() if k not in SECTIONS}
    own = data.get(section) or {}
    if not isinstance(own, dict):
        raise ClusterClipError(f"{p}: [{section}] must be a table of option names to values")
    values.update(own)
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def _strict(value, param: click.Parameter, where: str):
    """``value`` from a config file, refused unless it has exactly the flag's type (no coercion)."""
    t = param.type
    flag = param.opts[0] if getattr(param, "opts", None) else param.name

    def refuse(what: str):
        raise ClusterClipError(f"{where}: {param.name} = {value!r}: {what} (as {flag}); fix the config file")

    if getattr(param, "is_flag", False):
        if not isinstance(value, bool):
            refuse("must be true or false")
        return value
    if isinstance(t, click.Choice):
        if not isinstance(value, str) or value not in t.choices:
            refuse(f"choose one of {', '.join(map(str, t.choices))}")
        return value
    if isinstance(t, (click.types.IntParamType, click.IntRange)):
        if isinstance(value, bool) or not isinstance(value, int):
            refuse("must be a whole number")
    elif isinstance(t, (click.types.FloatParamType, click.FloatRange)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            refuse("must be a finite number")
    elif isinstance(t, click.types.BoolParamType):
        if not isinstance(value, bool):
            refuse("must be true or false")
    elif param.multiple or getattr(param, "nargs", 1) != 1:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            refuse("must be a list of text values")
        return value
    elif isinstance(value, list):  # e.g. format = ["bin", "parquet"] for --format bin,parquet
        if not value or not all(isinstance(v, str) for v in value):
            refuse("must be a text value or a list of them")
        return ",".join(value)
    elif not isinstance(value, str):
        refuse("must be a text value")
    try:  # ranges and path checks, exactly as for the flag
        return t.convert(value, param, None)
    except click.BadParameter as e:
        refuse(first_line(e))


def _config_callback(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    values = load_config(value, ctx.info_name or "")
    by_name: dict[str, click.Parameter] = {}
    for p in ctx.command.params:
        if p.name in ("config", "debug", "quiet"):
            continue
        by_name.setdefault(p.name, p)
        for opt in getattr(p, "opts", []):
            by_name.setdefault(opt.lstrip("-").replace("-", "_"), p)
    unknown = sorted(k for k in values if k not in by_name or isinstance(by_name[k], click.Argument))
    if unknown:
        raise ClusterClipError(f"{value}: unknown option(s) for `clusterclip {ctx.info_name}`: {', '.join(unknown)}; "
                               f"see `clusterclip {ctx.info_name} --help`")
    where = f"{value} [{ctx.info_name}]"
    ctx.default_map = {**(ctx.default_map or {}),
                       **{by_name[k].name: _strict(v, by_name[k], where) for k, v in values.items()}}
    return value


def config_option(f):
    """``--config FILE``: option values from a TOML/YAML file; flags on the command line win."""
    return click.option(
        "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_config_callback,
        help="TOML or YAML file of option values (a [embed]/[cluster]/[schedule] table each); flags override it.",
    )(f)


def _env_flag(name: str):
    def _set(ctx, param, value):
        if value:
            os.environ[name] = "1"
        return value
    return _set


def step_command(f):
    """Options of every subcommand: ``--config``, ``--quiet``, ``--debug``."""
    f = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_env_flag(DEBUG_ENV),
                     help="Show full tracebacks on errors.")(f)
    f = click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True, callback=_env_flag(QUIET_ENV),
                     help="No progress bars and no notes; only the summary and errors.")(f)
    return config_option(f)


def overwrite_option(f):
    return click.option(
        "--overwrite", is_flag=True,
        help="Replace an output directory that holds a finished run with other settings or inputs (the old "
             "output stays readable until the new one is complete).",
    )(f)


def rehash_option(f):
    return click.option(
        "--rehash-inputs", is_flag=True,
        help="Re-read every corpus file to check its sha256, even when its file status (size, times, inode) is "
             "unchanged since it was hashed.",
    )(f)


def engine_options(what: str, *, actors: bool = False):
    """``--engine`` and ``--ray-address`` (and ``--ray-actors`` for embed): where the work runs, never the result."""
    from ..engines import ENGINES

    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     help=f"Where {what} runs: local (this machine) or ray (a Ray cluster, see docs/SCALE.md). "
                          f"The output is the same; a finished run with the other engine is already done."),
        click.option("--ray-address", default=None, metavar="ADDR",
                     help="With --engine ray: the cluster to join (auto, HOST:6379 or ray://HOST:10001) "
                          "[default: $RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local Ray]."),
    ]
    if actors:
        options.append(click.option("--ray-actors", type=click.IntRange(min=1), default=None,
                                    help="With --engine ray: encoder actors, each loading the model once "
                                         "[default: one per GPU of the cluster; 1 without GPUs]."))

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def wants_progress() -> bool:
    """Progress bars on stderr unless --quiet, CLUSTERCLIP_NO_PROGRESS=1 or TQDM_DISABLE=1."""
    return os.environ.get(QUIET_ENV) != "1" and progress_enabled(True)


def note(message: str) -> None:
    """A note on stderr (hidden by --quiet)."""
    if os.environ.get(QUIET_ENV) != "1":
        click.echo(message, err=True)


def echo_summary(line: str) -> None:
    """The summary every step prints at the end (stdout, so it can be captured)."""
    click.echo(line)


# --------------------------------------------------------------------------- errors
def report_error(e: BaseException) -> int:
    """Print ``e`` as one ``error:`` line (a traceback only with --debug); return the exit code."""
    if os.environ.get(DEBUG_ENV) == "1":
        traceback.print_exception(e)
    if isinstance(e, ClusterClipError):
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    if is_disk_full(e):
        click.echo(f"error: no space left on device while writing {getattr(e, 'filename', None) or 'the output'}; "
                   f"free some space and rerun the same command to resume", err=True)
        return 28
    if isinstance(e, PermissionError):
        click.echo(f"error: permission denied: {e.filename}; choose a path you can read and write", err=True)
        return 13
    if isinstance(e, MemoryError):
        click.echo("error: out of memory; lower the batch, chunk or budget sizes, or use a larger machine", err=True)
        return 12
    if isinstance(e, OSError) and e.filename:
        click.echo(f"error: {e.filename}: {e.strerror or first_line(e)}; check the path and rerun", err=True)
        return 74
    click.echo(f"error: unexpected internal error ({type(e).__name__}: {first_line(e)}); this is a bug in clusterclip: "
               f"rerun with --debug and report the traceback", err=True)
    return 70
