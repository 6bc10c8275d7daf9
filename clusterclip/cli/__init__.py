"""The ``clusterclip`` command line: a thin click layer over the library.

Each subcommand lives in its own module and calls one library function.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__
from .common import report_error

#: subcommand name -> module of this package that defines a click command called ``command``
SUBCOMMANDS = {
    "embed": "embed",
    "merge": "merge",
    "cluster": "cluster",
    "schedule": "schedule",
    "inspect": "inspect",
    "clusters": "clusters",
    "report": "report",
}


class _LazyGroup(click.Group):
    """Import a subcommand's module only when it runs, so ``--help`` and bad calls stay fast."""

    def invoke(self, ctx):
        """Run the subcommand; user errors become one line on stderr and a non-zero exit."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted: rerun the same command to resume", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - reported as one line, traceback with --debug
            ctx.exit(report_error(e))

    def list_commands(self, ctx):
        return [name for name in SUBCOMMANDS if self._load(name) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        module = SUBCOMMANDS.get(name)
        if module is None:
            return None
        try:
            return importlib.import_module(f"{__name__}.{module}").command
        except ModuleNotFoundError as e:  # a subcommand not written yet
            if e.name == f"{__name__}.{module}":
                return None
            raise


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="clusterclip")
def cli():
    """Balanced data sampling for LLM training (ClusterClip, Shao et al. 2024).

    \b
      clusterclip embed    CORPUS... --out EMB      documents -> embeddings
      clusterclip cluster  EMB --out CL --k K       embeddings -> k-means clusters
      clusterclip schedule EMB CL --out OUT         clusters -> ClusterClip order -> token shards
      clusterclip inspect  OUT --sample I --decode  look inside the shards

    Every step writes a manifest.json, resumes when rerun after a crash and refuses
    inputs that do not match. Options can come from --config FILE (TOML or YAML).
    """


def main():
    """Console-script entry point."""
    cli(prog_name="clusterclip")
