"""Click options, config-file keys and ``--help`` sections, generated from the settings dataclasses.

Every option of every subcommand is a field of a settings dataclass declared with
:func:`clusterclip.settings.setting`; this module turns those fields into click options (flag,
aliases, type, default, help, section), reads ``--config`` files against the same rules, and
prints ``--help`` in sections. There is no second declaration to disagree with the first: a
flag, a config value and a library argument are checked by the same :class:`~clusterclip.settings.Rule`.

    @settings_command(EmbedSettings, OutputOptions, name="embed")
    @click.argument("inputs", nargs=-1, required=True)
    def command(inputs, **options):
        settings = build(EmbedSettings, options)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..errors import ClusterClipError
from ..settings import Rule, Settings, setting

S = TypeVar("S", bound=Settings)

#: ``--help`` sections, in the order printed: group key -> title
GROUPS = {
    "input": "Input",
    "model": "Model",
    "clustering": "Clustering",
    "sampling": "Sampling",
    "tokens": "Tokens and delimiters",
    "shards": "Shards",
    "show": "What to show",
    "output": "Output",
    "partitions": "Partitions (one job of several; `clusterclip merge` joins them)",
    "performance": "Performance",
    "engine": "Engine (where the work runs; never changes the result)",
    "clean": "Cleaning",
    "": "Options",
    "general": "General",
}


@dataclass(frozen=True)
class OutputOptions(Settings):
    """``--out`` and ``--overwrite``: where a step writes (arguments of the library call, not its settings)."""

    step = "output"

    out: str = setting(flag="--out", aliases=("-o",), kind=str, group="output", metavar="PATH",
                       help="Output directory.")
    overwrite: bool = setting(False, flag="--overwrite", kind=bool, group="output",
                              help="Replace an output directory that holds a finished run with other settings or "
                                   "inputs (the old output stays readable until the new one is complete).")


# --------------------------------------------------------------------------- the click type of a rule
class RuleType(click.ParamType):
    """Parses a flag's text into the rule's kind and checks it; a refusal is the rule's one-line error."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.name = rule.kind.__name__

    def convert(self, value: Any, param, ctx) -> Any:
        if isinstance(value, str):
            return self.rule.parse(value)
        return value  # a default or a config value, already checked

    def get_metavar(self, param, ctx=None) -> str:  # click < 8.2 passes only param
        rule = self.rule
        if rule.metavar:
            return rule.metavar
        if rule.choices is not None:
            return "[" + "|".join(map(str, rule.choices)) + "]"
        return {int: "INTEGER", float: "NUMBER", tuple: "NAME[,NAME...]"}.get(rule.kind, "TEXT")

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in (self.rule.choices or ()) if str(c).startswith(incomplete)]


class SettingOption(click.Option):
    """A click option generated from a settings field (knows its rule and its ``--help`` section)."""

    def __init__(self, decls, *, rule: Rule, group: str, **kwargs):
        super().__init__(decls, **kwargs)
        self.rule = rule
        self.group = group


def _help_text(rule: Rule) -> str:
    return rule.help() if callable(rule.help) else rule.help


def setting_options(*classes: type[Settings], help: dict[str, str] | None = None, skip: tuple[str, ...] = ()):
    """A decorator adding one click option per field of ``classes`` (in field order)."""
    overrides = help or {}
    options = []
    for cls in classes:
        for f in dataclasses.fields(cls):
            rule = f.metadata.get("rule")
            if rule is None or not rule.cli or f.name in skip:
                continue
            has_default = f.default is not dataclasses.MISSING
            default: Any = f.default if f.default is not dataclasses.MISSING else None
            kwargs: dict[str, Any] = {"rule": rule, "group": rule.group,
                                      "help": overrides.get(f.name, _help_text(rule))}
            if rule.kind is bool:
                kwargs.update(is_flag=True, default=bool(default))
            else:
                kwargs.update(type=RuleType(rule), default=default, required=not has_default,
                              show_default=default is not None and default != (), multiple=rule.multiple)
                if rule.kind is tuple and default is not None:
                    kwargs["default"] = ",".join(default)  # shown as --format bin,parquet would be typed
                if rule.metavar:
                    kwargs["metavar"] = rule.metavar
            options.append(click.option(rule.flag, *rule.aliases, f.name, cls=SettingOption, **kwargs))

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def build(cls: type[S], options: dict) -> S:
    """The ``cls`` settings object from the options a generated command received (other keys ignored).

    Unless ``--debug``, the engine keeps its own output off this process's terminal (Ray's native log
    lines): errors stay one ``error:`` line, a ``-q`` run prints nothing but clusterclip's.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    settings = cls(**{k: v for k, v in options.items() if k in names})
    if hasattr(settings, "engine"):
        from ..engines import engine
        from .common import DEBUG_ENV

        if os.environ.get(DEBUG_ENV) != "1":
            engine(settings.engine).quiet()
    return settings


# --------------------------------------------------------------------------- --help in sections
class SettingsCommand(click.Command):
    """A click command whose ``--help`` lists its options in sections (Input, Model, Performance, ...)."""

    def format_options(self, ctx, formatter):
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is None:
                continue
            group = getattr(param, "group", "general")
            sections.setdefault(group if group in GROUPS else "", []).append(record)
        for key, title in GROUPS.items():
            if sections.get(key):
                with formatter.section(title):
                    formatter.write_dl(sections[key])


# --------------------------------------------------------------------------- --config
def config_values(ctx: click.Context, path: str, values: dict) -> dict:
    """Config-file ``values`` of ``ctx.command`` checked by the rule of each option, keyed by parameter name.

    A key may be the field name or any flag without its dashes (``max-length``, ``num_shards``);
    an unknown key, or one naming a positional argument, is refused in one line.
    """
    by_key: dict[str, SettingOption] = {}
    for p in ctx.command.params:
        if not isinstance(p, SettingOption):  # only options generated from a setting have a config key
            continue
        by_key.setdefault(p.name, p)
        for opt in p.opts:
            if opt.startswith("--"):
                by_key.setdefault(opt[2:].replace("-", "_"), p)
    unknown = sorted(k for k in values if k not in by_key)
    if unknown:
        raise ClusterClipError(f"{path}: unknown option(s) for `clusterclip {ctx.info_name}`: {', '.join(unknown)}; "
                               f"see `clusterclip {ctx.info_name} --help`")
    out = {}
    for key, value in values.items():
        param = by_key[key]
        rule: Rule = param.rule
        if rule.kind is tuple and isinstance(value, str):  # format = "bin,parquet", as the flag is typed
            value = [v.strip() for v in value.split(",") if v.strip()]
        checked = rule.check(value, subject=f"{path} [{ctx.info_name}]: {key} = {value!r}",
                             fix=f" (as {rule.flag}); fix the config file")
        if rule.kind is tuple:
            checked = ",".join(checked)  # a default of the option, converted as the flag's text is
        out[param.name] = checked
    return out
