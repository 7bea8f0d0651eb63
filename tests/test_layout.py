"""The layout's import rules (README "Architecture"), read from the source with `ast`: every import
statement counts, the lazy ones inside functions included, so a rule cannot be dodged by
importing late.

The floors (arrows point down only):
- the ground floor (arena/ground: contract, wire, inference, client, charging, tuning) imports
  nothing of ours but itself and `protos`; the contract module imports numpy and nothing else;
- the middle floor: the server (arena/server) stands on the ground floor and imports neither
  the top floor, nor `attackers`, nor torch; `attackers` import only what the README's table
  says (the ground floor, numpy, numba; torch and `defenses` lazily, in the surrogate modules
  only; tqdm lazily, for progress bars), never `protos`; `scoreboard` imports nothing of ours
  but the contract module; `defenses` imports neither the arena (but its contract) nor
  `attackers`;
- the top floor (arena/top: the CLI, the benchmarks, the referee) is imported by nothing below it;
- in the server, only the modules that speak the wire import `protos`: the core and its rooms
  speak plain types (`arena.server.calls`), and nothing they import reaches protobuf either;
- and there are no import cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(package: str) -> dict[str, set[str]]:
    """{module file: every module name it imports (absolute; relative ones resolved)}."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    raise AssertionError(f"{path}: relative import; the layout rules read absolute names")
                names.add(node.module)
                # `from arena.ground import client` imports arena.ground.client
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        out[str(path.relative_to(ROOT))] = names
    return out


def scoped_imports_of(package: str) -> dict[str, set[tuple[str, bool]]]:
    """{module file: {(module name it imports, whether the import is lazy: inside a function)}}."""
    out: dict[str, set[tuple[str, bool]]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found: set[tuple[str, bool]] = set()

        def visit(node, lazy: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.Import):
                    found.update((alias.name, inner) for alias in child.names)
                elif isinstance(child, ast.ImportFrom):
                    found.add((child.module, inner))
                    found.update((f"{child.module}.{alias.name}", inner) for alias in child.names)
                visit(child, inner)

        visit(tree, False)
        out[str(path.relative_to(ROOT))] = found
    return out


def offenders(package: str, forbidden) -> list[str]:
    return sorted(f"{path}: {name}" for path, names in imports_of(package).items()
                  for name in names if forbidden(name))


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


OURS = ("arena", "attackers", "defenses", "scoreboard", "protos")


# The server's modules that may import `protos`, and why: `transport` decodes each request into a
# plain call and encodes each answer (the servicers); `leaderboard_wire` encodes the boards into
# their messages (the transport and the referee use it); `app` lists the services' names for health
# and reflection. Everything else in arena/server speaks plain types.
PROTO_SPEAKERS = ("arena/server/transport.py", "arena/server/leaderboard_wire.py", "arena/server/app.py")
# the core and its rooms (arena.server.core's docstring names them)
ROOMS = ("core", "calls", "submissions", "runs", "queries", "competition")


def _speaks_protobuf(name: str) -> bool:
    return _under(name, "protos")


def test_only_the_transport_speaks_protobuf():
    found = offenders("arena/server", _speaks_protobuf)
    assert [o for o in found if o.split(":")[0] not in PROTO_SPEAKERS] == []


def test_the_rooms_reach_no_protobuf():
    """What the core and its rooms import inside the server, followed all the way down, neither is
    a module that speaks the wire nor imports `protos` (so a room cannot get protobuf by proxy)."""
    graph = imports_of("arena/server")
    module_file = {path[:-3].replace("/", ".").removesuffix(".__init__"): path for path in graph}
    seen: set[str] = set()
    todo = [f"arena/server/{room}.py" for room in ROOMS]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        module = path[:-3].replace("/", ".")
        for name in graph[path]:
            while name and name not in module_file:      # arena.server.store.X -> the module file
                name = name.rpartition(".")[0]
            # a package the module sits in is left out, as in _module_graph (`from arena.server
            # import sandbox` names arena.server, whose lazy __getattr__ loads app only on demand)
            if name and not module.startswith(name + "."):
                todo.append(module_file[name])
    assert sorted(seen & set(PROTO_SPEAKERS)) == []
    assert [f"{path}: {n}" for path in sorted(seen) for n in graph[path] if _speaks_protobuf(n)] == []


def test_no_class_in_the_server_over_250_lines():
    """The server's rooms stay rooms a newcomer can read (issue 21): no class over 250 lines in
    the serving modules (arena/server/*.py; the store's backends, store/, are one SQL dialect each)."""
    long = []
    for path in sorted((ROOT / "arena" / "server").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 250:
                long.append(f"{path.relative_to(ROOT)}: {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_server_imports_no_attackers_no_torch_no_top_floor():
    assert offenders("arena/server", lambda n: _under(n, "attackers", "torch", "torchvision", "arena.top")) == []


def test_the_ground_floor_imports_only_itself_and_protos():
    def bad(name):
        return (_under(name, *OURS) and not _under(name, "arena.ground", "protos") and name != "arena") \
            or _under(name, "torch", "torchvision")
    assert offenders("arena/ground", bad) == []


def test_the_server_stands_on_the_ground_floor():
    """The server's shared pieces come from the ground floor (the contract, inference, wire,
    charging), not from copies of its own."""
    grounded = [path for path, names in imports_of("arena/server").items() if any(_under(n, "arena.ground") for n in names)]
    assert "arena/server/queries.py" in grounded and "arena/server/validation.py" in grounded


BELOW_THE_TOP = ("arena/ground", "arena/server", "attackers", "defenses", "scoreboard", "protos")


@pytest.mark.parametrize("package", BELOW_THE_TOP)
def test_nothing_below_the_top_floor_imports_it(package):
    assert offenders(package, lambda n: _under(n, "arena.top")) == []


def test_arena_has_only_its_floors():
    """arena/ holds the three floors and nothing beside them (a module at arena/'s top level would
    be on no floor): ground/, server/, top/, and the package's own __init__ and __main__."""
    # what holds Python source (a folder left with only __pycache__ after a move is no module)
    entries = {p.name for p in (ROOT / "arena").iterdir()
               if p.suffix == ".py" or (p.is_dir() and any(p.rglob("*.py")))}
    assert entries == {"__init__.py", "__main__.py", "ground", "server", "top"}, entries


# The README's table, row `attackers/`: what the attacks may import. Numpy and numba at any time;
# the surrogate attacks' modules load torch and `defenses` (checkpoints, the white-box DDN warm
# start) lazily, only when a surrogate is used; tqdm draws progress bars, lazily. Of ours, the
# ground floor (client, contract, charging, inference) and nothing else: no `protos` (the client
# answers in its own terms), no server, no scoreboard, no top floor.
ATTACKER_THIRD_PARTY = ("numpy", "numba")
ATTACKER_LAZY = ("tqdm",)
SURROGATE_MODULES = ("attackers/surrogates.py", "attackers/transfer.py", "attackers/livia.py")
SURROGATE_LAZY = ("torch", "defenses.checkpoint", "defenses.whitebox")


def attacker_offences() -> list[str]:
    import sys

    bad = []
    for path, found in scoped_imports_of("attackers").items():
        for name, lazy in found:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or _under(name, "attackers", "arena.ground", *ATTACKER_THIRD_PARTY):
                continue
            if name in ("arena", "defenses"):      # the package a `from arena.ground...` names
                continue
            if lazy and _under(name, *ATTACKER_LAZY):
                continue
            if lazy and path in SURROGATE_MODULES and _under(name, *SURROGATE_LAZY):
                continue
            bad.append(f"{path}: {name}{' (lazy)' if lazy else ''}")
    return sorted(bad)


def test_attackers_import_only_what_the_readme_says():
    assert attacker_offences() == []


def test_the_attacker_rule_sees_torch_at_module_level():
    probe = ROOT / "attackers" / "surrogates_probe.py"
    probe.write_text("import torch\nimport defenses.train\ndef f():\n    import protos\n    import torch\n")
    try:
        assert [o for o in attacker_offences() if "surrogates_probe" in o] == [
            "attackers/surrogates_probe.py: defenses.train", "attackers/surrogates_probe.py: protos (lazy)",
            "attackers/surrogates_probe.py: torch", "attackers/surrogates_probe.py: torch (lazy)"]
    finally:
        probe.unlink()


def test_scoreboard_imports_only_the_contract_of_ours():
    def bad(name):
        return _under(name, *OURS) and not _under(name, "scoreboard", "arena.ground.contract") and name != "arena"
    assert offenders("scoreboard", bad) == []


def test_contract_imports_numpy_only():
    names = imports_of("arena")["arena/ground/contract.py"]
    assert names <= {"__future__", "__future__.annotations", "enum", "numpy"}, names


def test_defenses_import_neither_the_arena_nor_the_attackers():
    def bad(name):
        return _under(name, "attackers") or (_under(name, "arena") and not _under(name, "arena.ground.contract")
                                            and name != "arena")
    assert offenders("defenses", bad) == []


@pytest.mark.parametrize("rule, module", [
    (lambda: offenders("arena/server", lambda n: n == "attackers"), "attackers"),
    (lambda: [o for o in offenders("arena/server", _speaks_protobuf)
              if o.split(":")[0] not in PROTO_SPEAKERS], "protos"),
])
def test_the_checker_sees_lazy_imports(rule, module, tmp_path, monkeypatch):
    """A lazy import inside a function is found (the rule would fail if one were added)."""
    probe = ROOT / "arena" / "server" / "_layout_probe.py"
    probe.write_text(f"def f():\n    import {module}\n")
    try:
        assert rule() == [f"arena/server/_layout_probe.py: {module}"]
    finally:
        probe.unlink()


def _module_graph() -> dict[str, set[str]]:
    """{module: the modules of ours it imports}, lazy imports included; a module's import of a
    package it sits in is left out (Python loads that package first in any case)."""
    names = {}
    for package in OURS:
        for path, imported in imports_of(package).items():
            module = path[:-3].replace("/", ".").removesuffix(".__init__")
            names[module] = imported

    def resolve(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {r for n in imported if (r := resolve(n)) and r != m and not m.startswith(r + ".")}
            for m, imported in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (its modules in order), or []."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_no_import_cycles():
    assert find_cycle(_module_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
