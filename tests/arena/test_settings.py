"""The server's settings are declared once (arena.server.settings): flags, checks and the
documented limits all come from, or are checked against, that one declaration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arena.top.cli import build_parser
from arena.top.cli.serve import config_from_args
from arena.server.settings import ArenaConfig, ServerConfig, flag_defaults

RULES = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_every_flag_parses_to_its_field_default():
    """...except the organizer's caps, which `arena serve` sets to the rules' defaults (in code: none)."""
    config = config_from_args(build_parser().parse_args(["serve", "--store", "s"]))
    assert config.arena == ArenaConfig(max_defenses_per_team=3, max_submissions_per_day=5)
    assert (config.public_samples, config.private_samples, config.port, config.durability) == (100, 100, 50051, "full")


def test_a_config_built_in_code_is_checked_like_one_from_flags():
    for bad in (dict(max_chunk=48), dict(budget=0), dict(worker_memory_mb=100), dict(latency_ms=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ArenaConfig(**bad)
    with pytest.raises(ValueError, match="--public-samples"):
        ServerConfig(public_samples=0)


def test_the_limits_table_in_the_rules_states_the_defaults():
    """Each row of docs/rules.md's limits table that names a flag gives that flag's default."""
    defaults = flag_defaults()
    rows = [line.split("|")[1:-1] for line in RULES.read_text().splitlines()
            if line.startswith("|") and "`--" in line]
    assert len(rows) >= 7
    for cells in rows:
        flag = re.search(r"`(--[a-z-]+)`", cells[2]).group(1)
        default = defaults[flag]
        shown = cells[1].strip()
        if default is None:
            assert shown == "all cores", (flag, shown)
        else:
            assert float(re.match(r"[\d.]+", shown).group()) == float(default), (flag, shown, default)
