"""Every option is declared once, in a settings dataclass: the click option, the config-file key and
the library argument follow one rule (type, range, choices, default), and ``--help`` prints them in
sections."""

from __future__ import annotations

import dataclasses

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.cli import SUBCOMMANDS, cli
from clusterclip.cli.options import GROUPS, SettingOption
from clusterclip.errors import InputError

COMMANDS = list(SUBCOMMANDS)
GENERAL = {"config", "quiet", "debug", "help"}


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def _options(name: str) -> list[click.Option]:
    return [p for p in _command(name).params if isinstance(p, click.Option) and p.name not in GENERAL]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_a_setting(name):
    """No hand-written click option is left: each one is generated from a field and its rule."""
    options = _options(name)
    assert options, name
    for p in options:
        assert isinstance(p, SettingOption), f"{name} {p.opts}"
        assert p.rule.flag in p.opts and p.group in GROUPS and p.group, f"{name} {p.opts}"
        assert p.help, f"{name} {p.opts}: no help"


def _boundaries(rule):
    values = {0, 1, -1, 2**31, 2**63}
    for bound in (rule.min, rule.max):
        if bound is not None:
            values |= {bound - 1, bound, bound + 1} if rule.kind is int else {bound - 0.5, bound, bound + 0.5}
    return sorted(values)


def _accepts(fn, value) -> bool:
    try:
        fn(value)
        return True
    except (InputError, click.BadParameter):
        return False


@pytest.mark.parametrize("name", COMMANDS)
def test_flags_and_settings_accept_the_same_numbers(name):
    """At and around every bound, the flag accepts exactly what the settings object accepts."""
    ctx = click.Context(_command(name))
    for p in _options(name):
        rule = p.rule
        if rule.kind not in (int, float):
            continue
        for v in _boundaries(rule):
            v = rule.kind(v)
            flag = _accepts(lambda x, p=p: p.type_cast_value(ctx, (str(x),) if p.multiple else str(x)), v)
            assert flag == _accepts(rule.check, (v,) if rule.multiple else v), f"{name} {rule.flag} {v}"


@pytest.mark.parametrize("name", COMMANDS)
def test_defaults_are_the_dataclass_defaults(name):
    ctx = click.Context(_command(name))
    from clusterclip.cli import options as generated

    for p in _options(name):
        default = p.get_default(ctx, call=True)
        if p.rule.kind is tuple:
            default = p.rule.parse(default)
        elif p.multiple:
            default = tuple(default or ())
        owner = _owner(name, p.name)
        field = {f.name: f for f in dataclasses.fields(owner)}[p.name]
        expected = None if field.default is dataclasses.MISSING else field.default
        assert default == expected, f"{name} {p.rule.flag}: {default!r} != {expected!r}"
        assert generated.SettingOption is type(p)


def _owner(command: str, field: str):
    from clusterclip.cache import CacheSettings
    from clusterclip.cli.options import OutputOptions
    from clusterclip.cluster import ClusterSettings
    from clusterclip.embed import EmbedSettings
    from clusterclip.embed.distill import DistillSettings
    from clusterclip.inspect_shards import InspectSettings
    from clusterclip.mixsearch.settings import FitSettings, ProposeSettings
    from clusterclip.proxy.settings import HoldoutSettings, ProxySettings
    from clusterclip.report.settings import ClustersSettings, ReportSettings
    from clusterclip.schedule import ScheduleSettings
    from clusterclip.schedule.settings import MixturesSettings
    from clusterclip.verify import VerifySettings

    own = {"embed": EmbedSettings, "cluster": ClusterSettings, "schedule": ScheduleSettings, "report": ReportSettings,
           "clusters": ClustersSettings, "inspect": InspectSettings, "verify": VerifySettings, "merge": OutputOptions,
           "mixtures": MixturesSettings, "distill": DistillSettings, "holdout": HoldoutSettings,
           "proxy": ProxySettings, "fit": FitSettings, "propose": ProposeSettings, "cache": CacheSettings}
    cls = own.get(command, OutputOptions)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls if field in names else OutputOptions


def test_report_max_repeats_is_schedules():
    """`report --max-repeats` draws the mix schedule's clip would: same default, same range."""
    from clusterclip.report.settings import ReportSettings
    from clusterclip.schedule import ScheduleSettings

    ours, theirs = ReportSettings.rules()["max_repeats"], ScheduleSettings.rules()["max_repeats"]
    assert (ours.min, ours.max, ours.kind) == (theirs.min, theirs.max, theirs.kind)
    assert ReportSettings().max_repeats == ScheduleSettings(dry_run=True).max_repeats


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["embed", "cluster", "schedule", "report", "clusters", "inspect", "verify"]),
       data=st.data())
def test_config_value_refused_exactly_when_the_rule_refuses_it(name, data, tmp_path_factory):
    """A config value goes through the rule of its flag, with the file and key named in the one line."""
    from clusterclip.cli.options import config_values

    p = data.draw(st.sampled_from(_options(name)))
    value = data.draw(st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=False), st.booleans(),
                                st.text(max_size=5), st.lists(st.text(max_size=3), max_size=2)))
    ctx = click.Context(_command(name), info_name=name)
    rule_ok = _accepts(p.rule.check, value if not (p.rule.kind is tuple and isinstance(value, str))
                       else [v.strip() for v in value.split(",") if v.strip()])
    key = p.rule.flag.lstrip("-").replace("-", "_")
    try:
        config_values(ctx, "c.toml", {key: value})
        config_ok = True
    except InputError as e:
        config_ok = False
        assert str(e).startswith(f"c.toml [{name}]: {key} = ") and p.rule.flag in str(e) and "\n" not in str(e)
    assert config_ok == rule_ok, (name, p.rule.flag, value)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_in_sections(name):
    """`--help` lists the options under section titles (Input, Model, ..., General), none left over."""
    from helpers import invoke

    code, output = invoke([name, "--help"])
    assert code == 0, output
    titles = [line[:-1] for line in output.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert "General" in titles and "Options" not in titles, titles
    assert set(titles) - {"Usage"} <= set(GROUPS.values()) | {"Example", "Examples"}, titles
    for p in _options(name):
        assert p.rule.flag in output
