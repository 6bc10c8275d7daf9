"""Shared CLI plumbing: config files, one-line errors, progress and summaries."""

from __future__ import annotations

import os
import tomllib
import traceback
from pathlib import Path

import click

from ..artifacts import is_disk_full
from ..errors import ClusterClipError

DEBUG_ENV = "CLUSTERCLIP_DEBUG"


# --------------------------------------------------------------------------- config files
def load_config(path: str | os.PathLike, section: str) -> dict:
    """Read option defaults for ``section`` (a subcommand) from a TOML or YAML file.

    The file may hold a table per subcommand (``[embed]``, ``[cluster]``,
    ``[schedule]``) and/or top-level keys shared by all; option names may use dashes
    or underscores (``max-length`` or ``max_length``).
    """
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as e:
        raise ClusterClipError(f"{p}: cannot read config file ({e.strerror}); check --config") from None
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ClusterClipError(f"{p}: unknown config format; use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise ClusterClipError(f"{p}: invalid config file ({str(e).splitlines()[0]}); fix its syntax") from None
    except Exception as e:  # yaml.YAMLError without importing yaml at module import
        if type(e).__module__.startswith("yaml"):
            raise ClusterClipError(f"{p}: invalid YAML ({str(e).splitlines()[0]}); fix its syntax") from None
        raise
    if not isinstance(data, dict):
        raise ClusterClipError(f"{p}: a config file must hold a mapping of option names to values")
    sections = {"embed", "merge", "cluster", "schedule", "inspect"}
    values = {k: v for k, v in data.items() if k not in sections}
    own = data.get(section) or {}
    if not isinstance(own, dict):
        raise ClusterClipError(f"{p}: [{section}] must be a table of option names to values")
    values.update(own)
    return {k.replace("-", "_"): v for k, v in values.items()}


def _config_callback(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    values = load_config(value, ctx.info_name or "")
    # accept an option's flag name (``format``) as well as its parameter name (``formats``)
    known = {p.name: p.name for p in ctx.command.params}
    for p in ctx.command.params:
        for opt in getattr(p, "opts", []):
            known.setdefault(opt.lstrip("-").replace("-", "_"), p.name)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise click.BadParameter(
            f"{value}: unknown option(s) for `{ctx.info_name}`: {', '.join(unknown)}; see `clusterclip {ctx.info_name} --help`",
            ctx=ctx,
            param=param,
        )
    ctx.default_map = {**(ctx.default_map or {}), **{known[k]: v for k, v in values.items()}}
    return value


def config_option(f):
    """``--config FILE``: option defaults from a TOML/YAML file; flags on the command line win."""
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=_config_callback,
        help="TOML or YAML file of option values (a [embed]/[cluster]/[schedule] table each); flags override it.",
    )(f)


def debug_option(f):
    def _set(ctx, param, value):
        if value:
            os.environ[DEBUG_ENV] = "1"
        return value

    return click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set,
        help="Show full tracebacks on errors.",
    )(f)


def overwrite_option(f):
    return click.option(
        "--overwrite", is_flag=True,
        help="Replace an output directory that holds a different run (by default it is refused).",
    )(f)


def step_command(f):
    """Common options of every step: --config, --overwrite is added separately, --debug."""
    return config_option(debug_option(f))


# --------------------------------------------------------------------------- errors
def report_error(e: BaseException) -> int:
    """Print ``e`` as one line (a traceback only with --debug); return the exit code."""
    debug = os.environ.get(DEBUG_ENV) == "1"
    if debug:
        traceback.print_exception(e)
    if isinstance(e, ClusterClipError):
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    if is_disk_full(e):
        click.echo(
            f"error: no space left on device while writing {getattr(e, 'filename', None) or 'output'}; "
            "free some space and rerun the same command to resume",
            err=True,
        )
        return 28
    if isinstance(e, PermissionError):
        click.echo(f"error: permission denied: {e.filename}; choose a path you can write to", err=True)
        return 13
    if isinstance(e, MemoryError):
        click.echo("error: out of memory; lower --batch-size or the chunk sizes", err=True)
        return 12
    if not debug:
        click.echo(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", err=True)
    return 1


def echo_summary(line: str) -> None:
    """The one-line summary every step prints at the end (stdout, so it can be captured)."""
    click.echo(line)


def wants_progress() -> bool:
    """Progress bars go to stderr; they are hidden when CLUSTERCLIP_NO_PROGRESS is set."""
    return os.environ.get("CLUSTERCLIP_NO_PROGRESS") != "1"
