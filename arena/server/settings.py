"""The server's settings, declared once (docs/rules.md, "Limits on submitted models").

Each field of `ServerConfig` and `ArenaConfig` that `arena serve` exposes carries its flag's help
text and its check in its metadata (`setting(...)`). From that one declaration come the flags
(`add_flags`, help with the default), their parsing (`from_args`) and the checks, which run in
`__post_init__` so a config built in code (tests, the demo, benchmarks) is held to the same
bounds as one built from flags. docs/rules.md's limits table is checked against the defaults
(tests/arena/test_settings.py).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from arena.ground.contract import DEFAULT_BUDGET, DEFAULT_MAX_CHUNK, IMAGE_BYTES

MESSAGE_SLACK = 1 << 20               # room in a message for everything but the image bytes
MIN_CHILD_MEMORY_MB = 512             # ONNX Runtime alone needs about 300 MiB of address space
LIMITS_GROUP = 'limits on submitted models (docs/rules.md, "Limits on submitted models")'
CAPS_GROUP = "the organizer's caps (docs/rules.md section 3; the organizer's own submissions are exempt; 0: no cap)"


# ------------------------------------------------------------------ checks: (value) -> error or ""

def at_least(low: float) -> Callable[[object], str]:
    return lambda v: "" if v is None or v >= low else f"must be >= {low:g}, got {v}"


def positive(v) -> str:
    return "" if v > 0 else f"must be > 0, got {v}"


def power_of_two(v) -> str:
    return "" if v >= 1 and not v & (v - 1) else f"must be a power of two, got {v}"


def budget_range(v) -> str:
    return "" if 1 <= v < 2**32 else f"must be in [1, 2**32), got {v}"


def child_memory(v) -> str:
    return "" if v == 0 or v >= MIN_CHILD_MEMORY_MB else (
        f"must be 0 (unlimited) or at least {MIN_CHILD_MEMORY_MB} (ONNX Runtime alone needs about "
        f"300 MiB of address space), got {v:g}")


def setting(default, help: str, *, check: Callable[[object], str] | None = None, flag: str | None = None,
            group: str | None = None, exclusive: str | None = None, **argparse_options):
    """A dataclass field that `arena serve` exposes as a flag (`--field-name` unless `flag` says);
    flags that name the same `exclusive` key are mutually exclusive."""
    meta = {"help": help, "check": check, "flag": flag, "group": group, "exclusive": exclusive,
            "options": argparse_options}
    return field(default=default, metadata={"setting": meta})


def _check(config) -> None:
    for f in dataclasses.fields(config):
        meta = f.metadata.get("setting")
        if meta and meta["check"]:
            error = meta["check"](getattr(config, f.name))
            if error:
                raise ValueError(f"{_flag(f)} ({f.name}) {error}")


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["setting"]["flag"] or "--" + f.name.replace("_", "-")


# ------------------------------------------------------------------ the settings

@dataclass(frozen=True)
class ArenaConfig:
    """The server core's settings: budget, batch and message limits, inference and validation limits."""

    budget: int = setting(DEFAULT_BUDGET, "queries per sample, team, defense and split, shared by the team's "
                          "runs; a new store records it, later the organizer sets it (`arena admin budget`)",
                          check=budget_range)
    max_batch: int = setting(256, "most images one Predict/SubmitAdversarials may carry (published)",
                             check=at_least(1))
    max_chunk: int = setting(DEFAULT_MAX_CHUNK, "largest batch handed to ONNX Runtime; a power of two",
                             check=power_of_two)
    batch_wait_ms: float = setting(0.0, "how long a lone request waits for company in the micro-batcher",
                                   check=at_least(0))
    latency_ms: float = setting(100.0, "per-image latency budget a submission must meet (the AVC's: 40 ms on a K80)",
                                check=positive, group=LIMITS_GROUP)
    max_upload_mb: float = setting(100.0, "largest ONNX upload, in MB", check=positive, group=LIMITS_GROUP)
    session_cache_mb: float = setting(2048.0, "memory budget of loaded ONNX Runtime sessions", check=positive)
    threads: int | None = setting(None, "ONNX Runtime intra-op threads (default: all cores)", check=at_least(1))
    inference_timeout_s: float = setting(30.0, "a model run taking longer fails; its images are run again alone",
                                         check=positive, group=LIMITS_GROUP)
    image_timeout_s: float = setting(10.0, "...each within this; an image still unanswered makes its request "
                                     "UNAVAILABLE, nothing charged (load is never a verdict)",
                                     check=positive, group=LIMITS_GROUP)
    concurrent_runs: int = setting(2, "model runs in flight per defense", check=at_least(1))
    team_images_in_flight: int = setting(512, "images one team may have in flight on one defense (Predict and "
                                         "SubmitAdversarials); more wait", check=at_least(1), metavar="N")
    team_wait_s: float = setting(10.0, "how long a team's request waits for room, then RESOURCE_EXHAUSTED",
                                 check=at_least(0), metavar="S")
    # Limits on submitted models. isolate=False runs them in this process (benchmarks only).
    isolate: bool = setting(True, "validate and serve models inside the server process, without the limits on "
                            "submitted models (benchmarks only: one hostile model can take the arena down)",
                            flag="--in-process", action="store_false", group=LIMITS_GROUP)
    validation_timeout_s: float = setting(240.0, "wall clock of one submission's validation, loading included",
                                          check=positive, group=LIMITS_GROUP, metavar="S")
    validation_memory_mb: float = setting(4096.0, "address space of a validation process; 0: unlimited",
                                          check=child_memory, group=LIMITS_GROUP, metavar="MB")
    worker_memory_mb: float = setting(4096.0, "address space of each defense's serving process; 0: unlimited",
                                      check=child_memory, group=LIMITS_GROUP, metavar="MB")
    concurrent_validations: int = setting(2, "submissions validated at once, at most one per team",
                                          check=at_least(1), group=LIMITS_GROUP, metavar="N")
    attack_board_top_k: int = setting(0, "the attack board ranks over the top K defenses of the public board, as "
                                      "the 2018 challenge did (0: every covered defense; docs/rules.md section 6)",
                                      check=at_least(0), metavar="K")
    # The organizer's caps: none in code (tests, benchmarks); `arena serve` sets the rules' (SERVE_DEFAULTS).
    max_defenses_per_team: int = setting(0, "accepted defenses a team may have, disqualified ones not counted",
                                         check=at_least(0), group=CAPS_GROUP, metavar="N")
    max_submissions_per_day: int = setting(0, "submissions a team may make per UTC day, rejected ones included",
                                           check=at_least(0), group=CAPS_GROUP, metavar="N")

    def __post_init__(self) -> None:
        _check(self)

    @property
    def max_message_bytes(self) -> int:
        return self.max_batch * IMAGE_BYTES + MESSAGE_SLACK

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


@dataclass
class ServerConfig:
    """Everything `arena serve` needs: the store, the evaluation splits, the address, durability and
    the core's settings (`arena`)."""

    store: str | Path | None = setting("arena-store", "store folder (SQLite database + ONNX blobs); or give "
                                       "--database-url", metavar="DIR")
    data: str = setting("demo", "evaluation data: 'demo', a tiny-imagenet-200 folder or an .npz",
                        metavar="{demo|PATH}")
    public_samples: int = setting(100, "samples of the public split, attacked in the open phase",
                                  check=at_least(1), metavar="N")
    private_samples: int = setting(100, "samples of the private split, the official board's, attacked in the "
                                   "final phase. With --data demo they are generated from a secret seed drawn when "
                                   "the store is created; otherwise give --private-data or --private-from-public",
                                   check=at_least(0), metavar="N")
    private_data: str | None = setting(None, "the organizer's own held-out images for the private split: a folder "
                                       "in the tiny-imagenet-200 layout (its val/ split) or an .npz, with --data's "
                                       "classes", exclusive="private", metavar="DIR")
    private_from_public: bool = setting(False, "deal the private split from --data's public validation samples "
                                        "(rules v2): any team can rebuild it, so this is a demo, not a competition, "
                                        "and every board says so", exclusive="private", action="store_true")
    evaluation: object | None = None   # an EvaluationData given instead of --data (tests)
    database_url: str | None = setting(None, "database URL (default: sqlite:///<store>/arena.db); "
                                       "postgresql://user@host/dbname lets several replicas share one arena "
                                       "(docs/deploy.md)", metavar="URL")
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(50051, "gRPC port; 0 picks a free one", check=at_least(0))
    http_port: int | None = setting(None, "also serve the live HTML report over HTTP on this port",
                                    check=at_least(0), metavar="PORT")
    durability: str = setting("full", "full: fsync every group commit; normal: survives kill -9, not power loss",
                              choices=("full", "normal"))
    grace_s: float = setting(10.0, "graceful shutdown period in seconds", check=positive)
    arena: ArenaConfig = field(default_factory=ArenaConfig)

    def __post_init__(self) -> None:
        _check(self)


# ------------------------------------------------------------------ flags

# `arena serve` asks for --store or --database-url, and runs a competition with the rules' caps.
SERVE_DEFAULTS: dict[str, object] = {"store": None, "max_defenses_per_team": 3, "max_submissions_per_day": 5}

def add_flags(parser: argparse.ArgumentParser, overrides: dict[str, object] | None = None) -> None:
    """One flag per setting of ServerConfig and ArenaConfig; `overrides` changes a flag's default
    (e.g. `arena serve` asks for --store or --database-url, so its --store default is None)."""
    overrides = overrides or {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for cls in (ServerConfig, ArenaConfig):
        for f in dataclasses.fields(cls):
            meta = f.metadata.get("setting")
            if meta is None:
                continue
            target = parser if meta["group"] is None else groups.setdefault(
                meta["group"], parser.add_argument_group(meta["group"]))
            if meta["exclusive"]:
                target = exclusive.setdefault(meta["exclusive"], target.add_mutually_exclusive_group())
            options = dict(meta["options"])
            default = overrides.get(f.name, f.default)
            if options.get("action") in ("store_true", "store_false"):
                target.add_argument(_flag(f), dest=f.name, help=meta["help"], **options)
                continue
            if "type" not in options and "choices" not in options:
                options["type"] = type(default) if default is not None else _annotated_type(f)
            shown = "" if "(default:" in meta["help"] else " (default: %(default)s)"
            target.add_argument(_flag(f), dest=f.name, default=default, help=meta["help"] + shown, **options)


def _annotated_type(f: dataclasses.Field) -> type:
    annotation = str(f.type)
    return int if annotation.startswith("int") else float if annotation.startswith("float") else str


def from_args(args: argparse.Namespace, **extra) -> ServerConfig:
    """The config the flags describe; ValueError names the first flag out of bounds."""
    values = vars(args)
    arena = ArenaConfig(**{f.name: values[f.name] for f in dataclasses.fields(ArenaConfig) if f.name in values})
    server = {f.name: values[f.name] for f in dataclasses.fields(ServerConfig)
              if f.name in values and f.name != "arena"}
    return ServerConfig(**server, **extra, arena=arena)


def flag_defaults(overrides: dict[str, object] = SERVE_DEFAULTS) -> dict[str, object]:
    """flag -> the default `arena serve` runs with, for the documentation check."""
    out = {}
    for cls in (ServerConfig, ArenaConfig):
        for f in dataclasses.fields(cls):
            if "setting" in f.metadata:
                out[_flag(f)] = overrides.get(f.name, f.default)
    return out


__all__ = ["SERVE_DEFAULTS", "ArenaConfig", "ServerConfig", "add_flags", "from_args", "flag_defaults", "setting"]
