"""The ``clusterclip`` command line: a thin click layer over the library.

Each subcommand lives in its own module (a click command called ``command`` that builds the
step's settings object and calls one library function), loaded only when it runs.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__
from .common import report_error

#: subcommand name -> (module of this package, one-line summary for `clusterclip --help`)
SUBCOMMANDS = {
    "embed": ("embed", "Embed the documents of a corpus (files, directories, globs)."),
    "distill": ("distill", "Distill a static embedding model for `embed --encoder model2vec` (offline)."),
    "merge": ("merge", "Merge the partitions of one `embed --num-partitions N` job."),
    "cluster": ("cluster", "Cluster the embeddings with spherical k-means (faiss)."),
    "schedule": ("schedule", "Plan the ClusterClip order and write token shards in it."),
    "mixtures": ("mixtures", "Plan N schedules with Dirichlet-drawn cluster weights (mixture search)."),
    "inspect": ("inspect", "List the shards of a schedule and read samples back."),
    "verify": ("verify", "Check every file of an output directory against its manifest."),
    "clusters": ("clusters", "Show each cluster: size, keywords, example documents."),
    "report": ("report", "Write an HTML report of the clusters and the schedule's mix."),
    "holdout": ("holdout", "Hold out documents of each cluster to score proxy models on."),
    "proxy": ("proxy", "Train a small LM per schedule and score it on the held-out set."),
    "fit": ("fit", "Fit held-out loss against the proxies' mixtures (log-linear law, LightGBM)."),
    "propose": ("propose", "Write the mixture the fit predicts best as a --weights file."),
    "cache": ("cache", "List or clean the token cache (tokenized corpora later schedules reuse)."),
}


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs; every error is one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        code = 0
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            if not standalone_mode:
                return rv
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.Exit as e:
            code = e.exit_code
        except click.exceptions.Abort as e:
            code = _interrupted() if isinstance(e.__cause__, KeyboardInterrupt) else _say("error: aborted", 1)
        except click.exceptions.UsageError as e:
            command = e.ctx.command_path if e.ctx is not None else "clusterclip"
            code = _say(f"error: {e.format_message()}; see `{command} --help`", 2)
        except click.ClickException as e:
            code = _say(f"error: {e.format_message()}", e.exit_code)
        except KeyboardInterrupt:
            code = _interrupted()
        except BrokenPipeError:  # `clusterclip ... | head`: the reader left; stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 141
        except Exception as e:  # noqa: BLE001 - reported as one line, traceback with --debug
            code = report_error(e)
        # exit outside the handlers, so that no failed frame (open files, memory maps) outlives the run
        sys.exit(code)

    def list_commands(self, ctx):
        return list(SUBCOMMANDS)

    def get_command(self, ctx, name):
        entry = SUBCOMMANDS.get(name)
        if entry is None:
            return None
        command = importlib.import_module(f"{__name__}.{entry[0]}").command
        command.short_help = entry[1]
        return command

    def format_commands(self, ctx, formatter):
        rows = [(name, summary) for name, (_, summary) in SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="clusterclip")
def cli():
    """Balanced data sampling for LLM training (ClusterClip, Shao et al. 2024).

    \b
      clusterclip embed    CORPUS... --out EMB         documents -> embeddings
      clusterclip merge    EMB-0 EMB-1 ... --out EMB   partitions of one embed job -> one directory
      clusterclip cluster  EMB --out CL --k K          embeddings -> k-means clusters
      clusterclip schedule EMB CL --out OUT --tokenizer T   clusters -> ClusterClip order -> token shards
      clusterclip mixtures EMB CL --out DIR --n 8      N schedules with random cluster weights
      clusterclip inspect  OUT --sample I --decode     look inside the shards
      clusterclip clusters CL [--show K]               what each cluster is about
      clusterclip report   EMB CL [OUT] --out R        HTML page of the clusters and the mix
      clusterclip verify   DIR                         check every file against its manifest

    Every step writes a manifest.json with the size and sha256 of each file, builds its
    output beside the old one and replaces it only when finished, resumes when rerun after
    a crash, and refuses inputs that do not match what their producer recorded. Options
    can come from --config FILE (TOML or YAML).
    """


def _say(line: str, code: int) -> int:
    click.echo(line, err=True)
    return code


def _interrupted() -> int:
    return _say("interrupted: rerun the same command to resume", 130)


def main():
    """Console-script entry point."""
    cli(prog_name="clusterclip")
