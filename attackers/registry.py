"""Finding an attack by name: the built-in ones, installed packages' entry points, or a class path.

`attack_class(spec)` resolves, in this order:
1. a built-in attack's registered name (`ATTACKS`: "boundary", "hsja", "cgba", ...);
2. a name an installed package registers in the entry-point group `robustness_arena.attacks`
   (pyproject.toml: `[project.entry-points."robustness_arena.attacks"] my-attack = "pkg.mod:MyAttack"`);
3. "package.module:ClassName", imported as is (the package must be importable).
The class must derive from `attackers.Attack`. `make_attack(spec, seed=..., surrogate=...,
**params)` builds it: `params` are its constructor's keyword arguments (checked by name, so a
typo is an error naming the parameters there are), the seed goes to the constructor when it
takes one (else it is set on the instance: the base class owns it), and surrogates go to a
constructor parameter named `surrogate` (one) or `surrogates` (a list).
"""

from __future__ import annotations

import importlib
import inspect
import json
from importlib import metadata
from typing import Any

from attackers.base import Attack, check_seed

ENTRY_POINT_GROUP = "robustness_arena.attacks"


def builtin_attacks() -> dict[str, type[Attack]]:
    from attackers.boundary import BoundaryAttack
    from attackers.cgba import CGBA
    from attackers.hopskipjump import HopSkipJump
    from attackers.livia import LIVIA
    from attackers.prior_guided import PriorGuidedCGBA
    from attackers.transfer import TransferPGD

    return {cls.name: cls for cls in (BoundaryAttack, HopSkipJump, CGBA, TransferPGD, PriorGuidedCGBA, LIVIA)}


def entry_point_attacks() -> dict[str, metadata.EntryPoint]:
    """The attacks installed packages register (not imported until used)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def attack_class(spec: str) -> type[Attack]:
    """The attack class `spec` names (see the module docstring); ValueError saying why not."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("the attack must be a name or package.module:ClassName")
    builtin = builtin_attacks()
    if spec in builtin:
        return builtin[spec]
    installed = entry_point_attacks()
    if spec in installed:
        try:
            cls = installed[spec].load()
        except Exception as error:
            raise ValueError(f"attack {spec!r} (entry point {installed[spec].value}) cannot be loaded: {error}") from None
        return _check_class(cls, f"entry point {spec!r} ({installed[spec].value})")
    if ":" not in spec:
        known = ", ".join([*builtin, *sorted(installed)])
        raise ValueError(f"unknown attack {spec!r}; choose one of {known}, or give package.module:ClassName")
    module_name, _, qualname = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or the module failing as it loads
        raise ValueError(f"cannot import {module_name!r} for attack {spec!r}: {error}") from None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"module {module_name!r} has no {qualname!r} (attack {spec!r})")
    return _check_class(obj, spec)


def _check_class(cls: Any, where: str) -> type[Attack]:
    if not (inspect.isclass(cls) and issubclass(cls, Attack)):
        raise ValueError(f"{where} is not a subclass of attackers.Attack")
    if inspect.isabstract(cls):
        raise ValueError(f"{where} does not implement search(tracker, positions, starts, rng)")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise ValueError(f"{where} must set a class attribute `name` (the attack's name on the scoreboard)")
    return cls


def surrogate_parameter(spec: str) -> str | None:
    """"surrogate" or "surrogates" where the attack `spec` names takes white-box surrogates (one,
    or a list), else None."""
    accepted = inspect.signature(attack_class(spec).__init__).parameters
    return next((p for p in ("surrogates", "surrogate") if p in accepted), None)


def make_attack(spec: str, *, seed: int | None = 0, surrogate=None, **params) -> Attack:
    """The attack `spec` names, built with `params` (see the module docstring)."""
    cls = attack_class(spec)
    seed = check_seed(seed)
    signature = inspect.signature(cls.__init__)
    accepted = {p: v for p, v in signature.parameters.items() if p != "self"}
    open_kwargs = any(v.kind is v.VAR_KEYWORD for v in accepted.values())
    surrogates = [] if surrogate is None else (list(surrogate) if isinstance(surrogate, (list, tuple)) else [surrogate])
    kwargs = dict(params)
    if "surrogates" in accepted:
        if not surrogates:
            raise ValueError(f"{cls.name} needs surrogate checkpoints (--surrogate CKPT, repeatable, from `arena train`)")
        kwargs["surrogates"] = surrogates
    elif "surrogate" in accepted:
        if not surrogates:
            raise ValueError(f"{cls.name} needs a surrogate checkpoint (--surrogate CKPT, from `arena train`)")
        if len(surrogates) > 1:
            raise ValueError(f"{cls.name} takes one surrogate checkpoint, got {len(surrogates)}")
        kwargs["surrogate"] = surrogates[0]
    elif surrogates:
        raise ValueError(f"--surrogate is not used by {cls.name}")
    unknown = [p for p in kwargs if p not in accepted and not open_kwargs]
    if unknown or "seed" in params:
        names = ", ".join(p for p in accepted if p not in ("seed", "surrogate", "surrogates")) or "none"
        bad = "seed (use --seed)" if "seed" in params else ", ".join(map(repr, unknown))
        raise ValueError(f"attack {cls.name} has no parameter {bad}; its parameters: {names}")
    if "seed" in accepted or open_kwargs:
        kwargs["seed"] = seed
    try:
        attack = cls(**kwargs)
    except TypeError as error:  # a required parameter missing, say
        raise ValueError(f"attack {cls.name}: {error}") from None
    if "seed" not in accepted and not open_kwargs:
        attack.seed = seed  # the base class owns the seed
    return attack


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`--param NAME=VALUE` items as keyword arguments: VALUE as JSON (numbers, true/false,
    null, lists), else as a plain string."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        if name in out:
            raise ValueError(f"--param {name} given twice")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out
