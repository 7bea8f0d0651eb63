"""Running one attack end to end: against an arena run (remote) or an ONNX file (local).

Remote (`attack_remote`): StartRun (or re-attach), page the run's samples, attack through a
`RemoteOracle` behind a `Tracker` whose improvement hook submits each sample's new best
adversarial (the exact bytes that were queried, so the arena verifies them free) in batched
SubmitAdversarials calls, at most every `submit_interval` seconds and at the end; then
FinishRun. Results report the distances the arena verified.

Resuming without paying twice. A small JSON state file (next to --out, or --state) holds the
run id, the attack's configuration and the number of Predict requests sent, rewritten after
every request. Request ids are deterministic (`<namespace>-<counter>`, the namespace a hash of
the configuration) and the attacks are deterministic for a seed, so an interrupted attack is
simply run again from the start on the same run: every request it already sent comes again
under the same id with the same images, and the server replays the stored answer without
charging; from the first request it never received on, queries are paid as usual. The state
file refuses a different configuration. If the re-run diverges anyway (the server says an id
was used for another request), the oracle moves to fresh ids and pays from there on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arena.ground.client import ArenaCallError, ArenaClient, is_rejected
from attackers.base import Attack, AttackResult
from attackers.oracle import Oracle
from attackers.remote import RemoteOracle, RequestIds
from attackers.tracker import Tracker

STATE_VERSION = 1


class SessionError(RuntimeError):
    """A user-facing failure of an attack session (the message says what to do)."""


# ---------------------------------------------------------------- the state file
@dataclass
class SessionState:
    """What `arena attack` saves to resume a run: the configuration (a different one is refused), the
    run id and the request counter."""

    server: str
    defense: str
    attack: str                 # the attack's repr: its full configuration
    budget: int
    samples: int | None
    run_id: str = ""
    namespace: str = ""
    requests: int = 0           # Predict requests sent so far (ids <namespace>-0 .. -(requests-1))
    completed: bool = False     # the attack itself has finished
    version: int = STATE_VERSION

    def config(self) -> dict[str, Any]:
        return {"server": self.server, "defense": self.defense, "attack": self.attack,
                "budget": self.budget, "samples": self.samples}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SessionState:
        try:
            values = json.loads(path.read_text())
            state = cls(**values)
        except (OSError, ValueError, TypeError) as error:
            raise SessionError(f"state file {path} is unreadable ({error}); remove it to start a new run") from None
        if state.version != STATE_VERSION:
            raise SessionError(f"state file {path} has version {state.version}, this client writes {STATE_VERSION}")
        return state


def default_state_path(out: str | os.PathLike | None) -> Path:
    return Path(f"{out}.state") if out else Path("arena-attack.state.json")


# ---------------------------------------------------------------- submissions
class Submitter:
    """Collects improved adversarials from the tracker and submits them in batches; keeps the
    arena's verified best distance per sample."""

    def __init__(self, client: ArenaClient, run_id: str, max_batch: int, verified: np.ndarray,
                 interval: float = 1.0) -> None:
        self.client, self.run_id, self.max_batch = client, run_id, max_batch
        self.verified = verified.astype(np.float64).copy()   # per run sample
        self.interval = interval
        self.pending: dict[int, tuple[np.ndarray, float]] = {}
        self.last = time.monotonic()
        self.submitted = 0
        self.rejected = 0

    def collect(self, tracker: Tracker, positions: np.ndarray) -> None:
        for p in positions:
            sample = int(tracker.sample_indices[p])
            distance = float(tracker.best_distance[p])
            if distance < self.verified[sample]:     # nothing to gain re-submitting (e.g. on replay)
                self.pending[sample] = (tracker.best[p].copy(), distance)
        if self.pending and time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.pending:
            return
        samples = np.fromiter(self.pending, dtype=np.int64)
        images = np.stack([self.pending[int(s)][0] for s in samples])
        self.pending.clear()
        for start in range(0, samples.size, self.max_batch):
            verdicts = self.client.submit_adversarials(self.run_id, images[start:start + self.max_batch],
                                          samples[start:start + self.max_batch])
            for v in verdicts:
                self.submitted += 1
                self.rejected += int(not v.adversarial)
                self.verified[v.sample_index] = min(self.verified[v.sample_index], v.best_distance)


# ---------------------------------------------------------------- progress
class _Watched(Oracle):
    """Delegates to an oracle and calls `after()` after every answered call (progress bars)."""

    def __init__(self, inner: Oracle) -> None:
        self.inner = inner
        self.image_shape = inner.image_shape
        self.bounds = inner.bounds
        self.after = lambda: None

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def max_batch(self):
        return self.inner.max_batch

    def labels(self, images, sample_indices):
        out = self.inner.labels(images, sample_indices)
        self.after()
        return out


class Progress:
    """A tqdm bar over the queries of a tracker: samples done (budget spent, or the attack over),
    queries used, samples with an adversarial, current mean l2 over those."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled
        self.description = description
        self.bar = None
        self.last = 0.0

    def attach(self, tracker: Tracker) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.tracker = tracker
        self.bar = tqdm(total=int(tracker.budget.sum()), desc=self.description, unit="q", dynamic_ncols=True,
                        leave=True)

    def update(self, force: bool = False, finished: bool = False) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        t = self.tracker
        found = t.found
        self.bar.n = int(t.queries.sum())
        done = t.num_samples if finished else int((t.remaining == 0).sum())
        self.bar.set_postfix(done=f"{done}/{t.num_samples}",
                             found=f"{int(found.sum())}",
                             mean_l2=f"{t.best_distance[found].mean():.4f}" if found.any() else "-",
                             refresh=False)
        self.bar.refresh()

    def close(self, finished: bool = True) -> None:
        if self.bar is not None:
            self.update(force=True, finished=finished)
            self.bar.close()


# ---------------------------------------------------------------- outcomes
@dataclass
class Outcome:
    """What a session reports: the attack's own result, and (remote) the arena's verified distances."""

    result: AttackResult
    verified: np.ndarray | None = None    # float64 [n]: the arena's best verified distance (+inf: none)
    run: Any = None                       # the final RunInfo (remote)
    info: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        rows = self.result.records()
        if self.verified is not None:
            for row, v in zip(rows, self.verified):
                row["verified_distance"] = float(v) if math.isfinite(v) else None
        return rows

    def summary(self) -> dict[str, Any]:
        d = self.verified if self.verified is not None else self.result.distances
        found = np.isfinite(d)
        return {
            "samples": int(d.size),
            "success_rate": float(found.mean()) if d.size else 0.0,
            "mean_l2": float(d[found].mean()) if found.any() else None,
            "median_l2": float(np.median(d[found])) if found.any() else None,
            "queries": int(self.result.queries.sum()),
            "max_queries_per_sample": int(self.result.queries.max()) if d.size else 0,
            **self.info,
        }

    def write_json(self, path: str | os.PathLike, header: dict[str, Any]) -> None:
        body = {**header, "summary": self.summary(), "samples": self.records()}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=1, allow_nan=False)
        os.replace(tmp, path)


# ---------------------------------------------------------------- local
def attack_local(oracle: Oracle, attack: Attack, images: np.ndarray, labels: np.ndarray, budget: int,
                 *, progress: bool = True) -> Outcome:
    watched = _Watched(oracle)
    bar = Progress(progress, f"{attack.name} (local)")
    tracker = Tracker(watched, images, labels, budget)
    bar.attach(tracker)
    watched.after = bar.update
    try:
        result = attack.run(tracker, images, labels, None)
    finally:
        bar.close()
    return Outcome(result)


# ---------------------------------------------------------------- remote
def attack_remote(
    client: ArenaClient,
    *,
    defense: str,
    attack: Attack,
    budget: int | None,
    samples: int | None,
    state_path: Path,
    progress: bool = True,
    submit_interval: float = 1.0,
    log=print,
    split: str | None = None,
) -> Outcome:
    """Starts (or resumes, per the state file) a run of `attack` against `defense`, attacks,
    submits, finishes the run. `split` None attacks the current phase's split (naming another is
    the organizer's privilege). Raises SessionError / ArenaCallError with a clear message; on any
    failure or interruption the adversarials found so far are submitted first."""
    config = SessionState(server=client.address, defense=defense, attack=repr(attack),
                          budget=-1 if budget is None else int(budget), samples=samples)
    state = _open_state(state_path, config, client)
    if state.run_id:
        run = client.get_run(state.run_id)
        started = f"resuming run {state.run_id} ({state.requests} requests to replay free of charge)"
    else:
        run = _start_run(client, defense, attack, split)
        state.run_id = run.run_id
        state.namespace = hashlib.sha256(json.dumps(config.config(), sort_keys=True).encode()).hexdigest()[:12]
        state.save(state_path)
        started = f"started run {run.run_id}"
    count = run.num_samples if samples is None else min(int(samples), int(run.num_samples))
    # what this session really does: its samples and its budget per sample
    allowed = int(run.budget_per_sample)
    used = allowed if budget is None else min(int(budget), allowed)
    log(f"{started}: {attack.name} against {defense}, attacking {count} of {run.num_samples} samples, "
        f"budget {used} per sample" + ("" if used == allowed else f" (the arena allows {allowed})"))
    x, y = client.samples(run.run_id, count)
    if x.shape[0] != count:
        raise SessionError(f"the arena sent {x.shape[0]} samples, expected {count}")
    per_sample = int(run.budget_per_sample) if budget is None else min(int(budget), int(run.budget_per_sample))
    verified = np.full(int(run.num_samples), np.inf)
    verified[: len(run.best_distances)] = np.asarray(run.best_distances, dtype=np.float64)

    def persist(counter: int) -> None:
        state.requests = max(state.requests, counter)
        state.save(state_path)

    replay_until = state.requests
    ids = RequestIds(state.namespace, 0, on_issue=persist)
    oracle = RemoteOracle(client, run, ids, replay_until=replay_until)
    if not state.completed and replay_until == 0 and not (oracle.remaining[:count] > 0).any():
        raise SessionError(f"run {run.run_id} has no query budget left for its {count} samples")
    submitter = Submitter(client, run.run_id, oracle.max_batch, verified, submit_interval)
    watched = _Watched(oracle)
    bar = Progress(progress, f"{attack.name} vs {defense}")
    tracker = Tracker(watched, x, y, per_sample, sample_indices=np.arange(count), on_improve=submitter.collect)
    bar.attach(tracker)
    watched.after = bar.update
    interrupted: BaseException | None = None
    try:
        if not state.completed:
            attack.run(tracker, x, y, None)
            state.completed = True
            state.save(state_path)
    except BaseException as error:  # KeyboardInterrupt included: keep what was found
        interrupted = error
    finally:
        bar.close(finished=interrupted is None)
        try:
            submitter.flush()
        except ArenaCallError as error:
            if interrupted is None:
                interrupted = error
    if interrupted is not None:
        raise interrupted
    final = client.finish_run(run.run_id)
    verified = np.full(count, np.inf)
    best = np.asarray(final.best_distances, dtype=np.float64)[:count]
    verified[: best.size] = best
    result = AttackResult.from_tracker(tracker)
    return Outcome(result, verified=verified, run=final, info={
        "run_id": final.run_id,
        "replayed_requests": oracle.replayed,
        "submitted": submitter.submitted,
        "rejected_by_arena": submitter.rejected,
    })


def _open_state(path: Path, config: SessionState, client: ArenaClient) -> SessionState:
    if not path.exists():
        return config
    state = SessionState.load(path)
    if state.config() != config.config():
        diff = [f"{k}: {state.config()[k]!r} (saved) != {config.config()[k]!r} (now)"
                for k in config.config() if state.config()[k] != config.config()[k]]
        raise SessionError(f"state file {path} belongs to another attack configuration ({'; '.join(diff)}); "
                           "remove it, or pass another --state/--out, to start a new run")
    if state.run_id:
        try:
            run = client.get_run(state.run_id)
        except ArenaCallError as error:
            raise SessionError(f"cannot resume run {state.run_id} from {path}: {error}") from None
        if run.finished:
            raise SessionError(f"run {state.run_id} in {path} is already finished; remove the state file to start a new run")
    return state


def check_defense(client: ArenaClient, defense: str):
    """The defense's record; SessionError naming the known defenses if there is no such one."""
    try:
        record = client.get_defense(defense)
    except ArenaCallError as error:
        if error.status != "NOT_FOUND":
            raise
        try:
            names = sorted(d.name for d in client.list_defenses())
        except ArenaCallError:
            names = []
        known = f"; defenses on this arena: {', '.join(names)}" if names else "; this arena has no defenses yet"
        raise SessionError(f"unknown defense {defense!r}{known}") from None
    if is_rejected(record):
        raise SessionError(f"defense {defense!r} was rejected by the arena: {'; '.join(record.rejection_reasons)}")
    return record


def _start_run(client: ArenaClient, defense: str, attack: Attack, split: str | None = None):
    check_defense(client, defense)
    return client.start_run(defense, attack.name, split=split, config_digest=attack.config_digest())
