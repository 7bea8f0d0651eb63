"""`arena bench serve --profile DIR`: where a server's CPU goes, sampled by py-spy under the bench's load.

py-spy (a sampling profiler that attaches from outside; no instrumentation, so the path runs at
its own speed) records this process while the bench's client processes drive one server at a
time, so every sample that is not idle belongs to that server: its event loop, gRPC's threads,
the batcher's worker threads and ONNX Runtime's (native time is attributed to the Python frame
that called into it, e.g. `InferenceSession.run`). Each profile is summarised as the functions
with the most samples on top of the stack (self) and anywhere in it (inclusive), with their
share of the samples and that share of the server's measured CPU per image. The raw collapsed
stacks are written beside it (`DIR/<server>.txt`, one `frame;frame;... count` per line: the input
of flamegraph.pl or speedscope).

Then the arena is measured with each part of the rules' work switched off in turn (the value
check and the charging fast path; the digests of images answered adversarial; the durable group
commit), and with all of them off, against the bare server in the same alternating slices: what
each rule costs per image, and what is left of the arena's own machinery.

The sampler shares the machine (100 samples a second by default: a few percent of a core), so a
profiled window runs a little slower than the bench's own cells: read the profile for where the
time goes, and the cells for how much there is.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def py_spy() -> str:
    """The py-spy executable (the `dev` extra installs it), or a clear error."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy: pip install -c constraints.txt py-spy (it is in the 'dev' extra)")
    return found


def thread_cpu() -> dict[int, float]:
    """CPU seconds per thread of this process (Linux /proc; empty elsewhere), by native thread id."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out = {}
    for task in Path("/proc/self/task").glob("*") if Path("/proc/self/task").exists() else ():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:   # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks   # utime + stime
    return out


def thread_names() -> dict[int, str]:
    """Native thread id -> Python thread name; threads Python did not start (ONNX Runtime's
    intra-op pool, gRPC core's pollers) are not listed."""
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def record(out: Path, drive, *, rate: int = 100) -> tuple[float, dict[str, float]]:
    """Samples this process while drive() runs; writes collapsed stacks to `out`. Returns the CPU
    seconds this process spent during drive() (getrusage, not the samples) and the CPU seconds
    per group of threads (Python thread names without their number; 'native' for the others)."""
    from arena.top.bench.clients import cpu_seconds

    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(os.getpid()), "--format", "raw", "--threads", "--nonblocking",
         "--rate", str(rate), "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)   # py-spy attaches and starts sampling
    if spy.poll() is not None:
        raise SystemExit(f"py-spy could not sample this process: {spy.stdout.read().strip()}")
    # the threads' window nested inside the process's: their sum cannot exceed the process's CPU
    cpu0 = cpu_seconds()
    threads0 = thread_cpu()
    try:
        drive()
    finally:
        threads1 = thread_cpu()
        cpu = cpu_seconds() - cpu0
        names = thread_names()
        spy.send_signal(signal.SIGINT)   # py-spy writes what it sampled and exits
        spy.communicate(timeout=60)
    groups: Counter = Counter()
    for tid, seconds in threads1.items():
        name = re.sub(r"[-_]\d+$", "", names.get(tid, "native (ONNX Runtime, gRPC core)"))
        groups[name] += seconds - threads0.get(tid, 0.0)
    return cpu, dict(groups)


def _function(frame: str) -> str:
    """'fn (path/file.py:12)' -> 'fn (file.py)': lines of one function count together."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m['fn']} ({Path(m['file']).name})"


def summarise(path: Path) -> dict:
    """Samples in total, and per function: self samples (top of the stack) and inclusive ones."""
    self_, inclusive, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";")[1:]]   # [0]: the thread
        if not frames:
            continue
        total += n
        self_[frames[-1]] += n
        for fn in set(frames):
            inclusive[fn] += n
    return {"samples": total, "self": self_, "inclusive": inclusive}


def table(name: str, summary: dict, images: int, cpu: float, threads: dict[str, float], rate: int,
          top: int = 15) -> str:
    """Markdown: the process's CPU per image, split by thread group (from /proc: real CPU time),
    then the top functions by self samples. A sample is a Python thread seen running (or ready to
    run) on that function; `us/image` = samples / rate / images, so native threads that no Python
    frame owns (ONNX Runtime's intra-op pool) are only in the thread table."""
    per = 1e6 / max(images, 1)
    total = max(summary["samples"], 1)
    lines = [f"### {name}: {images} images, {cpu * per:.1f} us of CPU per image", "",
             "| threads | CPU us/image |", "|---|---|"]
    lines += [f"| {group} | {seconds * per:.1f} |" for group, seconds in sorted(threads.items(), key=lambda kv: -kv[1])
              if seconds * per >= 0.05]
    lines += ["", "| function (file) | self % of samples | self us/image | inclusive % |", "|---|---|---|---|"]
    for fn, n in summary["self"].most_common(top):
        lines.append(f"| `{fn}` | {100 * n / total:.1f} | {n / rate * per:.1f} | "
                     f"{100 * summary['inclusive'][fn] / total:.1f} |")
    return "\n".join(lines)


def profile_servers(servers: dict, clients, batch: int, n_clients: int, seconds: float, out_dir: Path,
                    rate: int = 100) -> list[str]:
    """Profiles each of `servers` ({name: served}) under `n_clients` clients sending `batch`
    images for `seconds`; writes DIR/<name>.txt and DIR/profile.md; returns the tables."""
    out_dir = Path(out_dir)
    tables = []
    for name, target in servers.items():
        box: dict = {}

        def drive(target=target, box=box) -> None:
            results = clients.grpc(target, n_clients, batch, seconds)
            box["images"] = sum(x["images"] for x in results)

        cpu, threads = record(out_dir / f"{name}.txt", drive, rate=rate)
        summary = summarise(out_dir / f"{name}.txt")
        tables.append(table(f"{name} (batch {batch}, {n_clients} clients, {seconds:g} s)", summary,
                            box["images"], cpu, threads, rate))
    (out_dir / "profile.md").write_text("\n\n".join(tables) + "\n")
    return tables


# ---------------------------------------------------------------- the rules' work, switched off


ABLATIONS = {   # what each switch removes from the in-process arena (for this measurement only)
    "checks": "the value check and the charging rule's fast path (docs/rules.md sections 2, 4)",
    "digests": "the digests of images answered adversarial (free verification, section 5)",
    "commit": "the durable group commit (charges, replay record, digests)",
}


def _switched_off(parts: set[str]):
    """Patches the in-process arena so that `parts` do nothing; returns the undo."""
    import numpy as np

    from arena.ground import charging
    from arena.server import images, queries, writer

    saved = []

    def patch(owner, name, value):
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    if "checks" in parts:
        patch(charging.SampleCharger, "fast", lambda self, x, named: np.ones(x.shape[0], dtype=bool))
        patch(images, "in_unit_interval", lambda values: True)
    if "digests" in parts:
        patch(queries, "image_digests",
              lambda x, rows=None, algorithm="": [bytes(32)] * (x.shape[0] if rows is None else len(rows)))
    if "commit" in parts:
        patch(writer.GroupCommitWriter, "commit_blocking", lambda self, ops: None)

    def undo() -> None:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
    return undo


def ablations(arena, bare, clients, batch: int, n_clients: int, seconds: float, rounds: int = 2) -> str:
    """Images/s and CPU per image (by thread group) of the in-process arena as served, with each
    part of the rules' work switched off, with all of it off, and of the bare server: in
    alternating slices, so that what the rules cost per image is measured, not guessed."""
    cells = [("as served", set()), *((f"without {k}", {k}) for k in ABLATIONS),
             ("without all three", set(ABLATIONS)), ("bare server", None)]
    totals = {name: {"images": 0, "seconds": 0.0, "cpu": Counter()} for name, _ in cells}
    for _ in range(rounds):
        for name, parts in cells:
            undo = _switched_off(parts) if parts is not None else (lambda: None)
            try:
                before, start = thread_cpu(), time.perf_counter()
                results = clients.grpc(bare if parts is None else arena, n_clients, batch, seconds)
                elapsed, after = time.perf_counter() - start, thread_cpu()
            finally:
                undo()
            names = thread_names()
            cell = totals[name]
            cell["images"] += sum(x["images"] for x in results)
            cell["seconds"] += elapsed
            for tid, value in after.items():
                group = re.sub(r"[-_]\d+$", "", names.get(tid, "native"))
                group = {"arena-infer": "model runs", "ThreadPoolExecutor-0": "model runs",
                         "arena-server": "event loop" if parts is not None else "other"}.get(group, group)
                if parts is None and group.startswith("Thread-") and "lambda" in group:
                    group = "event loop"      # the bare server's loop thread
                if group not in ("model runs", "event loop", "native"):
                    group = "other"
                cell["cpu"][group] += value - before.get(tid, 0.0)
    lines = [f"### the rules' work, switched off (batch {batch}, {n_clients} clients, {rounds} x {seconds:g} s each)",
             "", "| server | images/s | / bare | CPU us/image | model-run threads | event loop | native | other |",
             "|---|---|---|---|---|---|---|---|"]
    bare_rate = totals["bare server"]["images"] / max(totals["bare server"]["seconds"], 1e-9)
    for name, _ in cells:
        cell = totals[name]
        per = 1e6 / max(cell["images"], 1)
        rate = cell["images"] / max(cell["seconds"], 1e-9)
        cpu = cell["cpu"]
        lines.append(f"| {name} | {rate:.0f} | {rate / bare_rate:.3f} | {sum(cpu.values()) * per:.1f} | "
                     + " | ".join(f"{cpu[g] * per:.1f}" for g in ("model runs", "event loop", "native", "other"))
                     + " |")
    lines += ["", *(f"- {k}: {v}" for k, v in ABLATIONS.items())]
    return "\n".join(lines)
