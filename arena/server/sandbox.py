"""Untrusted models run apart: child processes under limits, and submission validation in one.

A submitted ONNX file is untrusted code (docs/rules.md section 3 and "Limits on submitted models"): ONNX Runtime
may allocate without bound, loop for ever or crash on it. So the arena never loads one in its own
process. Every child is started by `spawn_child`:

- a fresh interpreter (`python -c BOOT`, nothing inherited from the server's threads), in its
  own process group, so that killing the group ends it and anything it started (the same
  session: it shares the server's scheduler autogroup, as in-process inference would); it is killed
  by the kernel when the server dies (PR_SET_PDEATHSIG; note: when the thread that started it
  ends, which for the arena's long-lived pool threads means at shutdown);
- address-space limit (RLIMIT_AS) and no core files, set by BOOT before anything else is
  imported, so ONNX Runtime and numpy load under the limit; an allocation past it fails inside
  the child (ORT raises, numpy raises MemoryError), never in the server;
- one thread for the BLAS/OpenMP pools (ONNX Runtime's own pool is sized by `threads`);
- its stderr to an anonymous file, whose tail names what went wrong when it dies;
- validations at niceness +10 once their latency check is done (that one is measured at the
  server's priority: its verdict must not depend on how busy serving is), so that serving
  keeps its share of the cores during the long probes.

`validate_in_child` runs the whole of `arena.server.validation.validate` in such a child under a
wall-clock limit, and turns every way it can end (verdict, time-out, allocation failure, signal)
into reasons naming the limit. The child answers in JSON, never pickle: the server does not
unpickle what a process running untrusted code wrote. `Children` remembers every live child so
that shutdown can end them all within its grace period.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

MEMORY_REASON = "memory"
_ROOT = str(Path(__file__).resolve().parents[2])
_ALLOC_MARKERS = ("bad_alloc", "failed to allocate", "memoryerror", "cannot allocate", "out of memory",
                  "unable to allocate")

# Runs first in every child: limits, then the entry point (module:function) named in argv.
BOOT = r"""
import ctypes, os, resource, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG: ended with the server, even by kill -9
if os.getppid() != int(sys.argv[3]):
    os._exit(1)
limit = int(sys.argv[1])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
import importlib
module, function = sys.argv[2].split(":")
getattr(importlib.import_module(module), function)()
"""


@dataclass(frozen=True)
class ChildLimits:
    """What a child may use. memory_mb: address space (0: unlimited); threads: ONNX Runtime's
    intra-op threads (its pools are the only threads that scale with the model); nice: added
    to its scheduling niceness."""

    memory_mb: float = 4096.0
    threads: int = 1
    nice: int = 0                 # validations yield to serving (after their latency check)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_mb * (1 << 20)) if self.memory_mb > 0 else 0


class Children:
    """The live children of one arena, so that shutdown can end every one of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.closed = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            if self.closed:
                kill(proc)
                raise RuntimeError("the arena is shutting down")
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        """Ends every child now (SIGKILL to its process group) and refuses new ones."""
        with self._lock:
            self.closed = True
            procs = list(self._procs)
        for proc in procs:
            kill(proc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._procs)


def child_env(limits: ChildLimits) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               ARENA_CHILD_MEMORY_MB=str(int(limits.memory_mb)))
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn_child(entry: str, limits: ChildLimits, children: Children | None = None,
                pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.Popen, object]:
    """Starts `entry` ("module:function") in a limited child. Returns (process, stderr file)."""
    stderr = tempfile.TemporaryFile(prefix="arena-child-")
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOT, str(limits.memory_bytes), entry, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, close_fds=True, pass_fds=pass_fds,
        process_group=0, env=child_env(limits),
    )
    if children is not None:
        try:
            children.add(proc)
        except RuntimeError:
            stderr.close()
            raise
    return proc, stderr


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL to the child's process group (it leads its own session), then reaps it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel will reap
        pass


def tail(stderr, limit: int = 400) -> str:
    """The last line(s) of a child's stderr, for a reason or a log line."""
    try:
        stderr.seek(0, os.SEEK_END)
        size = stderr.tell()
        stderr.seek(max(0, size - 4096))
        text = stderr.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out = lines[-1] if lines else ""
    return out if len(out) <= limit else "..." + out[-limit:]


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def is_allocation_failure(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _ALLOC_MARKERS)


# ---------------------------------------------------------------- validation in a child


@dataclass(frozen=True)
class ValidationLimits:
    """The sandbox of one validation: wall clock for the whole of it, and the child's limits."""

    timeout_s: float = 240.0
    child: ChildLimits = ChildLimits()


def validate_in_child(name: str, data: bytes, evaluation_x, evaluation_y, limits, sandbox: ValidationLimits,
                      children: Children | None = None):
    """`arena.server.validation.validate` in a limited child. Blocking (call it on a worker
    thread). Returns a `Validation` (without a loaded model); a child that runs out of time or
    memory, or dies, gives a rejection whose reason names the limit or the signal."""
    from arena.server.validation import Validation

    import numpy as np

    from arena.server.errors import Unavailable

    memory_mb = sandbox.child.memory_mb
    shutting_down = Unavailable("the arena is shutting down; submit again later")
    try:
        proc, stderr = spawn_child("arena.server.sandbox:validation_child", sandbox.child, children)
    except RuntimeError:
        raise shutting_down from None
    deadline = time.monotonic() + sandbox.timeout_s
    limits = replace(limits, nice_after_latency=sandbox.child.nice)   # this child's own niceness
    request = pickle.dumps((name, data, np.ascontiguousarray(evaluation_x), np.asarray(evaluation_y), limits),
                           protocol=pickle.HIGHEST_PROTOCOL)
    out = b""
    timed_out = False
    try:
        out, _ = proc.communicate(request, timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
    except (BrokenPipeError, OSError):   # it died before reading its input: the exit says why
        try:
            out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, OSError, ValueError):
            timed_out = proc.poll() is None
    finally:
        kill(proc)
        if children is not None:
            children.discard(proc)
    detail = tail(stderr)
    stderr.close()
    if children is not None and children.closed and proc.returncode == -signal.SIGKILL:
        raise shutting_down              # ended by the shutdown: no verdict, nothing recorded
    if timed_out:
        return Validation(reasons=[
            f"time: validation did not finish within the limit of {sandbox.timeout_s:g} s "
            "(the model is too slow or hangs); the child was ended"])
    if proc.returncode == 0 and out:
        try:
            answer = json.loads(out)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("reasons"), list):
            reasons = [str(r) for r in answer["reasons"]]
            return Validation(
                reasons=reasons, details=[str(d) for d in answer.get("details", [])],
                num_classes=int(answer.get("num_classes", 0)),
                clean_correct=np.asarray(answer.get("clean_correct", []), dtype=np.bool_),
                clean_accuracy=float(answer.get("clean_accuracy", 0.0)),
                serving_mode=str(answer.get("serving_mode", "")),
            )
    # the way it ended names the rule; its stderr (runtime text) is for the operator's log only
    how = describe_exit(proc.returncode)
    details = [f"validation process {how}: {detail}"] if detail else []
    if is_allocation_failure(detail) or proc.returncode == -signal.SIGKILL:
        return Validation(reasons=[
            f"{MEMORY_REASON}: the model needs more than the memory limit of {memory_mb:g} MiB "
            f"(validation process {how})"], details=details)
    return Validation(reasons=[f"crash: the validation process running the model died ({how})"], details=details)


def validation_child() -> None:
    """The child's side: read the request, validate, answer in JSON on the real stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                      # anything printed goes to stderr, not into the answer
    name, data, x, y, limits = pickle.load(sys.stdin.buffer)
    from arena.server.validation import Validation, validate

    memory_mb = int(os.environ.get("ARENA_CHILD_MEMORY_MB", "0"))
    try:
        result = validate(name, data, x, y, limits)
    except MemoryError:
        result = Validation(reasons=["memory: the model needs more memory than the limit allows"])
    reasons = [_name_memory(r, d, memory_mb) for r, d in zip(result.reasons, _details_by_reason(result))]
    answer = {
        "reasons": reasons, "details": result.details, "num_classes": result.num_classes,
        "clean_correct": [bool(v) for v in result.clean_correct], "clean_accuracy": result.clean_accuracy,
        "serving_mode": result.serving_mode,
    }
    out.write(json.dumps(answer).encode())
    out.flush()
    os._exit(0)                        # no interpreter teardown: a hostile session may crash in it


def _details_by_reason(result) -> list[str]:
    """Each reason's runtime detail ("" if none): `Validation.fail` keeps them in order, prefixed
    with the reason's rule."""
    details = list(result.details)
    out = []
    for reason in result.reasons:
        rule = reason.split(":")[0]
        match = next((d for d in details if d.startswith(rule + ":")), "")
        if match:
            details.remove(match)
        out.append(match)
    return out


def _name_memory(reason: str, detail: str, memory_mb: int) -> str:
    """An allocation failure inside ONNX Runtime is the memory rule, whatever check hit it."""
    if reason.startswith(MEMORY_REASON + ":") or not is_allocation_failure(detail):
        return reason
    limit = f" of {memory_mb} MiB" if memory_mb else ""
    return f"{MEMORY_REASON}: the model needs more than the memory limit{limit}"
