"""Served defenses run in worker processes: one child per loaded defense, images and logits in
shared memory.

`WorkerDefense` stands where an in-process `arena.inference.DefenseModel` would (it has the same
`labels(images)`), so the micro-batcher, its group commits and the session cache are unchanged.
Its ONNX Runtime session lives in a child started by `arena.server.sandbox.spawn_child` (address
space limit, killed as a process group). The child runs `arena.inference.DefenseModel.logits`,
the one inference path, so chunking into power-of-two batches (batch invariance) is exactly the
in-process one.

Transport. One slot per concurrent model run (the batcher's `max_inflight`). Each slot owns two
regions of one anonymous shared file (memfd, mapped by both processes; no name to leak, no
resource tracker, freed with the last mapping): `capacity` input images and `capacity` rows of
logits. A run copies its images into the slot, sends 8 bytes (slot, count) down the child's
stdin, and waits for a 16-byte answer (slot, status, rows, classes) on its stdout; the logits
are read from the slot and labelled by `arena.contract.labels_from_logits` here (non-finite
logits are failures). Nothing is pickled.

Failures. A run that gets no answer within `timeout_s` kills the child (it may be stuck inside
one operator, beyond RunOptions.terminate) and raises `DefenseFailure`: the batcher answers
those images FAILED_LABEL (misclassified, docs/rules.md section 5) and charges them. Runs in
flight on the same child that it takes down with it, and runs whose child crashed, are retried
once on a fresh child before they count as failures. The child is restarted on the next run;
a child that cannot even be restarted makes the run `Unavailable` (nothing charged, retryable).
Other defenses live in other children: nothing here can touch their requests.
"""

from __future__ import annotations

import logging
import mmap
import os
import queue
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from arena.contract import IMAGE_SHAPE, IMAGE_VALUES, labels_from_logits
from arena.server.errors import Unavailable
from arena.server.sandbox import ChildLimits, Children, describe_exit, is_allocation_failure, kill, spawn_child, tail

log = logging.getLogger("arena.workers")

_REQUEST = struct.Struct("<II")           # slot, images
_ANSWER = struct.Struct("<IIII")          # slot, status, rows, classes
_HELLO = struct.Struct("<I")              # 0 once the session is loaded
OK, FAILED = 0, 1
READY = 0x52454459


class DefenseFailure(RuntimeError):
    """The defense failed on its input (error, crash, time-out): its images count as misclassified."""


class _WorkerLost(RuntimeError):
    """The child went away while this run was in flight, through no proven fault of this run."""


class _Child:
    """One running worker process and the thread that reads its answers."""

    def __init__(self, proc: subprocess.Popen, stderr, slots: int) -> None:
        self.proc = proc
        self.stderr = stderr
        self.answers: list[tuple[int, int, int] | None] = [None] * slots
        self.events = [threading.Event() for _ in range(slots)]
        self.alive = True
        self.blamed: int | None = None        # the slot whose time-out killed it
        self.send_lock = threading.Lock()

    def start_reader(self, name: str) -> None:
        threading.Thread(target=self._read, name=f"arena-worker-{name}", daemon=True).start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        try:
            while True:
                raw = stdout.read(_ANSWER.size)
                if len(raw) < _ANSWER.size:
                    break
                slot, status, rows, classes = _ANSWER.unpack(raw)
                if slot >= len(self.events):
                    break                       # nonsense from the child: treat as dead
                self.answers[slot] = (status, rows, classes)
                self.events[slot].set()
        except (OSError, ValueError):
            pass
        self.alive = False
        for event in self.events:
            event.set()

    def send(self, slot: int, count: int) -> None:
        with self.send_lock:
            self.proc.stdin.write(_REQUEST.pack(slot, count))
            self.proc.stdin.flush()


class WorkerDefense:
    """A served defense whose session runs in a child process (see the module docstring)."""

    def __init__(self, name: str, data: bytes, mode: str, max_chunk: int, num_classes: int, *,
                 capacity: int, slots: int, timeout_s: float, limits: ChildLimits,
                 children: Children | None = None, load_timeout_s: float = 120.0) -> None:
        self.name = name
        self.mode = mode
        self.max_chunk = max_chunk
        self.size_bytes = len(data)
        self.num_classes = max(2, int(num_classes))
        self.capacity = int(capacity)
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self._data = data
        self._limits = limits
        self._children = children
        self._slots = slots
        self._in_bytes = self.capacity * IMAGE_VALUES * 4
        self._out_bytes = self.capacity * self.num_classes * 4
        size = slots * (self._in_bytes + self._out_bytes)
        self._fd = os.memfd_create(f"arena-{name}", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._inputs, self._outputs = [], []
        for k in range(slots):
            base = k * (self._in_bytes + self._out_bytes)
            self._inputs.append(np.frombuffer(self._map, np.float32, self.capacity * IMAGE_VALUES, base)
                                .reshape(self.capacity, *IMAGE_SHAPE))
            self._outputs.append(np.frombuffer(self._map, np.float32, self.capacity * self.num_classes,
                                               base + self._in_bytes))
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for k in range(slots):
            self._free.put(k)
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._closed = False
        self.spawns = 0
        self.start()

    # ---------------------------------------------------------------- lifecycle

    @property
    def restarts(self) -> int:
        return max(0, self.spawns - 1)

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None and child.alive else None

    def start(self) -> None:
        """Starts the child if it is not running (blocking until its session is loaded)."""
        with self._lock:
            if self._closed:
                raise Unavailable(f"defense {self.name!r} is not available right now (closed); retry")
            if self._child is not None and self._child.alive and self._child.proc.poll() is None:
                return
            if self._child is not None:
                self._end(self._child)
            self._child = self._spawn()
            self.spawns += 1

    def _spawn(self) -> _Child:
        try:
            proc, stderr = spawn_child("arena.server.workers:worker_child", self._limits, self._children,
                                       pass_fds=(self._fd,))
        except (RuntimeError, OSError) as error:
            raise Unavailable(f"defense {self.name!r} is not available right now ({error}); retry") from None
        child = _Child(proc, stderr, self._slots)
        header = struct.pack("<IIIIIII", self._fd, self._slots, self.capacity, self.num_classes,
                             self.max_chunk, self._limits.threads, len(self._data))
        mode = self.mode.encode()
        try:
            proc.stdin.write(header + struct.pack("<I", len(mode)) + mode + self._data)
            proc.stdin.flush()
            ready = _read_exact(proc.stdout, _HELLO.size, self.load_timeout_s)
        except (OSError, ValueError, TimeoutError):
            ready = b""
        if len(ready) != _HELLO.size or _HELLO.unpack(ready)[0] != READY:
            detail = tail(stderr)
            self._end(child)
            log.error("worker of defense %s could not start (%s): %s", self.name, describe_exit(proc.returncode),
                      detail)
            raise Unavailable(f"defense {self.name!r} is not available right now (its worker did not start); retry")
        child.start_reader(self.name)
        return child

    def _end(self, child: _Child) -> None:
        kill(child.proc)
        child.alive = False
        for event in child.events:
            event.set()
        if self._children is not None:
            self._children.discard(child.proc)
        for stream in (child.proc.stdin, child.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        child.stderr.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._child is not None:
                self._end(self._child)
                self._child = None

    def kill_child(self) -> None:
        """Ends the child now, as a crash would (tests, shutdown)."""
        child = self._child
        if child is not None:
            kill(child.proc)

    # ---------------------------------------------------------------- runs

    def labels(self, images: np.ndarray, run_options=None) -> np.ndarray:
        """int32 [n]: FAILED_LABEL where the logits are not all finite. Raises DefenseFailure when
        the defense errs, crashes or times out, Unavailable when no child can be started."""
        n = images.shape[0]
        if n > self.capacity:     # never from the batcher (capacity >= its largest run): split
            return np.concatenate([self.labels(images[a:a + self.capacity]) for a in range(0, n, self.capacity)])
        slot = self._free.get()
        try:
            for attempt in (0, 1):
                try:
                    return self._run(slot, images)
                except _WorkerLost as error:
                    if attempt:
                        raise DefenseFailure(str(error)) from None
            raise AssertionError("unreachable")
        finally:
            self._free.put(slot)

    def _run(self, slot: int, images: np.ndarray) -> np.ndarray:
        self.start()
        child = self._child
        if child is None:
            raise _WorkerLost("the worker is gone")
        n = images.shape[0]
        self._inputs[slot][:n] = images
        event = child.events[slot]
        event.clear()
        child.answers[slot] = None
        try:
            child.send(slot, n)
        except (OSError, ValueError):
            self._lost(child)
            raise _WorkerLost(f"the worker of defense {self.name!r} died") from None
        if not event.wait(self.timeout_s):
            child.blamed = slot
            log.warning("defense %s: no answer within %.3g s; ending its worker", self.name, self.timeout_s)
            self._lost(child)
            raise DefenseFailure(f"no answer within {self.timeout_s:g} s")
        answer = child.answers[slot]
        if answer is None:
            self._lost(child)
            if child.blamed is not None and child.blamed != slot:
                raise _WorkerLost("the worker was ended for another run's time-out")
            how = describe_exit(child.proc.poll())
            detail = tail(child.stderr)
            kind = "out of memory" if is_allocation_failure(detail) else "crashed"
            log.warning("defense %s: worker %s (%s) %s", self.name, kind, how, detail)
            raise _WorkerLost(f"the worker {kind} ({how})")
        status, rows, classes = answer
        if status != OK or rows != n or classes * rows > self.capacity * self.num_classes:
            raise DefenseFailure("the model failed on this input")
        logits = self._outputs[slot][:rows * classes].reshape(rows, classes)
        return labels_from_logits(logits)

    def _lost(self, child: _Child) -> None:
        with self._lock:
            if self._child is child:
                self._end(child)
                self._child = None


def _read_exact(stream, size: int, timeout_s: float) -> bytes:
    """Reads `size` bytes from a pipe within timeout_s (the worker's hello)."""
    import select

    fd = stream.fileno()
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, size - len(out))
        if not chunk:
            break
        out += chunk
    return out


# ---------------------------------------------------------------- the child's side


def worker_child() -> None:
    """Reads its set-up and the model from stdin, loads the session, then serves runs: one
    thread per slot, answers written under a lock on the real stdout."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    fd, slots, capacity, num_classes, max_chunk, threads, size = struct.unpack("<IIIIIII", _read(stdin, 28))
    (mode_len,) = struct.unpack("<I", _read(stdin, 4))
    mode = _read(stdin, mode_len).decode()
    data = _read(stdin, size)

    from arena.inference import DefenseModel, make_session

    model = DefenseModel("worker", make_session(data, threads), mode, max_chunk, len(data))
    del data
    in_bytes = capacity * IMAGE_VALUES * 4
    out_bytes = capacity * num_classes * 4
    shared = mmap.mmap(fd, slots * (in_bytes + out_bytes))
    inputs = [np.frombuffer(shared, np.float32, capacity * IMAGE_VALUES, k * (in_bytes + out_bytes))
              .reshape(capacity, *IMAGE_SHAPE) for k in range(slots)]
    outputs = [np.frombuffer(shared, np.float32, capacity * num_classes, k * (in_bytes + out_bytes) + in_bytes)
               for k in range(slots)]
    write_lock = threading.Lock()
    queues = [queue.SimpleQueue() for _ in range(slots)]

    def answer(slot: int, status: int, rows: int, classes: int) -> None:
        with write_lock:
            out.write(_ANSWER.pack(slot, status, rows, classes))

    def serve(slot: int) -> None:
        while True:
            n = queues[slot].get()
            try:
                logits = model.logits(inputs[slot][:n])
                rows, classes = logits.shape
                if logits.dtype != np.float32 or rows * classes > capacity * num_classes:
                    raise ValueError(f"logits of shape {list(logits.shape)} and type {logits.dtype}")
                outputs[slot][:rows * classes] = logits.reshape(-1)
            except Exception as error:
                print(f"run failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}",
                      file=sys.stderr, flush=True)
                answer(slot, FAILED, 0, 0)
                continue
            answer(slot, OK, rows, classes)

    for k in range(slots):
        threading.Thread(target=serve, args=(k,), daemon=True).start()
    out.write(_HELLO.pack(READY))
    while True:
        raw = stdin.read(_REQUEST.size)
        if len(raw) < _REQUEST.size:
            break
        slot, n = _REQUEST.unpack(raw)
        if slot < slots and 0 < n <= capacity:
            queues[slot].put(n)
    os._exit(0)


def _read(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        os._exit(3)
    return data
