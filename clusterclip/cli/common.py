"""Shared CLI plumbing: config files (same types as the flags), one-line errors, --quiet, notes.

Every step is a small click function that builds its settings object from the flags and calls
one library function; this module gives them ``--config``, ``--debug`` and ``--quiet``.
"""

from __future__ import annotations

import os
import tomllib
import traceback
from pathlib import Path
from typing import Any

import click

from ..artifacts import is_disk_full
from ..errors import ClusterClipError, first_line
from ..progress import progress_enabled
from .options import config_values

DEBUG_ENV = "CLUSTERCLIP_DEBUG"
QUIET_ENV = "CLUSTERCLIP_QUIET"


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
            data = yaml.load(text, Loader=_unique_key_loader()) or {}
        except _DuplicateKey as e:
            raise ClusterClipError(f"{p}: {e}; keep one") from None
        except yaml.YAMLError as e:
            raise ClusterClipError(f"{p}: invalid YAML ({first_line(e)}); fix its syntax") from None
    else:
        raise ClusterClipError(f"{p}: unknown config format; use a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise ClusterClipError(f"{p}: a config file must hold a mapping of option names to values")
    from . import SUBCOMMANDS  # config-file tables: one per subcommand

    values = _normalized({k: v for k, v in data.items() if k not in SUBCOMMANDS}, p, "")
    own = data.get(section) or {}
    if not isinstance(own, dict):
        raise ClusterClipError(f"{p}: [{section}] must be a table of option names to values")
    own = _normalized(own, p, f"[{section}] ")
    if section == "schedule" and "stage" in own:  # [[schedule.stage]] tables: this file is also the --stages file
        del own["stage"]
        own.setdefault("stages", str(p))
    values.update(own)
    return values


def _normalized(table: dict, p: Path, where: str) -> dict:
    """``table`` with dashes in names made underscores, refusing a name given twice (``max-length`` and ``max_length``)."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # name -> the spelling given
    for k, v in table.items():
        name = str(k).replace("-", "_")
        if name in out:
            raise ClusterClipError(f"{p}: {where}{given[name]!r} and {k!r} name the same option; keep one")
        out[name], given[name] = v, k
    return out


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping (PyYAML keeps the last one silently)."""


def _unique_key_loader():
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[object, int] = {}  # key -> the line it was first given on
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` may be overridden: that is what it is for
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(f"key {key!r} given twice (lines {seen[key]} and {line})")
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _config_callback(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    values = config_values(ctx, value, load_config(value, ctx.info_name or ""))
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def _env_flag(name: str):
    def _set(ctx, param, value):
        if value:
            os.environ[name] = "1"
        return value
    return _set


def step_command(f):
    """Options of every subcommand: ``--config``, ``--quiet``, ``--debug`` (the "General" section of --help)."""
    f = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_env_flag(DEBUG_ENV),
                     help="Show full tracebacks on errors.")(f)
    f = click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True, callback=_env_flag(QUIET_ENV),
                     help="No progress bars and no notes; only the summary and errors.")(f)
    return click.option(
        "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_config_callback,
        metavar="FILE",
        help="TOML or YAML file of option values (names as the flags, e.g. max-length = 128): top-level keys apply "
             "to every command, a table named after the command ([embed], [cluster], [schedule], [report], ...) "
             "to this one; flags override it.",
    )(f)


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


def run_and_report(step, out, overwrite: bool):
    """Run a step through the one driver and print its summary (what every step's command ends with)."""
    from ..steps import run_step

    result = run_step(step, out, overwrite=overwrite)
    echo_summary(result.summary)
    for warning in step.warnings(result):
        click.echo(f"warning: {warning}", err=True)
    return result


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
