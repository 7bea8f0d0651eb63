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
    cpu0, threads0 = cpu_seconds(), thread_cpu()
    try:
        drive()
    finally:
        cpu, threads1 = cpu_seconds() - cpu0, thread_cpu()
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
