"""Served defenses run in worker processes: one child per loaded defense, images and logits in
shared memory.

`WorkerDefense` stands where an in-process `arena.ground.inference.DefenseModel` would (it has the same
`labels(images)`), so the micro-batcher, its group commits and the session cache are unchanged.
Its ONNX Runtime session lives in a child started by `arena.server.sandbox.spawn_child` (address
space limit, killed as a process group). The child runs `arena.ground.inference.DefenseModel.logits`,
the one inference path, so chunking into power-of-two batches (batch invariance) is exactly the
in-process one.

Transport. One slot per concurrent model run (the batcher's `max_inflight`). Each slot owns two
regions of one anonymous shared file (memfd, mapped by both processes; no name to leak, no
resource tracker, freed with the last mapping): `capacity` input images and `capacity` rows of
logits, and two pipes. A run copies its images into the slot, writes 8 bytes (slot, count) to
the slot's request pipe, where the child's thread for that slot waits, and polls the slot's
answer pipe for 16 bytes (slot, status, rows, classes): no thread in between on either side.
The logits are read from the slot and labelled here by `arena.ground.contract.labels_from_logits`
(non-finite logits are failures). Nothing is pickled. The child ends when its stdin closes.

Failures. A run that gets no answer within `timeout_s` kills the child (it may be stuck inside
one operator, beyond RunOptions.terminate) and raises `DefenseFailure(timed_out=True)`: the
batcher runs those images again alone, and only a failure that reproduces alone is a verdict
(docs/rules.md section 5). Runs in
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
import select
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from arena.ground.contract import IMAGE_SHAPE, IMAGE_VALUES, labels_from_logits
from arena.server.errors import Unavailable
from arena.server.sandbox import ChildLimits, Children, describe_exit, is_allocation_failure, kill, spawn_child, tail

log = logging.getLogger("arena.workers")

_REQUEST = struct.Struct("<II")           # slot, images
_ANSWER = struct.Struct("<IIII")          # slot, status, rows, classes
_HELLO = struct.Struct("<I")              # 0 once the session is loaded
OK, FAILED = 0, 1
LOGGED_FAILURES = 100
READY = 0x52454459


class DefenseFailure(RuntimeError):
    """The defense failed on its input (error, crash, time-out). `timed_out`: no answer in time
    (its own, or the worker was ended for another run's): never a verdict by itself (the batcher
    runs the images again alone, docs/rules.md section 5)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _WorkerLost(RuntimeError):
    """The child went away while this run was in flight, through no proven fault of this run
    (`for_timeout`: ended for another run's time-out)."""

    def __init__(self, message: str, for_timeout: bool = False) -> None:
        super().__init__(message)
        self.for_timeout = for_timeout


class _Child:
    """One running worker process: per slot, a request pipe (ours to write) and an answer pipe
    (ours to read, polled by the run waiting on it: no reader thread, no hand-over)."""

    def __init__(self, proc: subprocess.Popen, stderr, requests: list[int], answers: list[int]) -> None:
        self.proc = proc
        self.stderr = stderr
        self.requests = requests
        self.answers = answers
        self.polls = []
        for fd in answers:
            poll = select.poll()
            poll.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            self.polls.append(poll)
        self.alive = True
        self.blamed: int | None = None        # the slot whose time-out ended it
        self.users = 0                        # runs using its pipes (closed when the last leaves)
        self.closed = False

    def close_pipes(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in self.requests + self.answers:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def answer(self, slot: int, timeout_s: float) -> tuple[int, int, int] | None:
        """(status, rows, classes); None if the child is gone; raises TimeoutError."""
        fd, raw = self.answers[slot], b""
        deadline = time.monotonic() + timeout_s
        while len(raw) < _ANSWER.size:
            left = deadline - time.monotonic()
            if left <= 0 or not self.polls[slot].poll(left * 1e3 + 1):
                if time.monotonic() >= deadline:
                    raise TimeoutError
                continue
            try:
                chunk = os.read(fd, _ANSWER.size - len(raw))
            except OSError:
                return None
            if not chunk:
                return None
            raw += chunk
        answer_slot, status, rows, classes = _ANSWER.unpack(raw)
        return (status, rows, classes) if answer_slot == slot else None


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
        try:
            self.start()
        except BaseException:
            self._closed = True
            os.close(self._fd)
            raise

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
        pipes = [(os.pipe(), os.pipe()) for _ in range(self._slots)]   # (request r, w), (answer r, w)
        theirs = [fd for (req, ans) in pipes for fd in (req[0], ans[1])]
        try:
            proc, stderr = spawn_child("arena.server.workers:worker_child", self._limits, self._children,
                                       pass_fds=(self._fd, *theirs))
        except (RuntimeError, OSError) as error:
            for (req, ans) in pipes:
                for fd in (*req, *ans):
                    os.close(fd)
            raise Unavailable(f"defense {self.name!r} is not available right now ({error}); retry") from None
        for fd in theirs:
            os.close(fd)
        child = _Child(proc, stderr, [req[1] for req, _ in pipes], [ans[0] for _, ans in pipes])
        fds = [self._fd, *theirs]
        header = struct.pack(f"<IIIIII{len(fds)}I", self._slots, self.capacity, self.num_classes,
                             self.max_chunk, self._limits.threads, len(self._data), *fds)
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
        return child

    def _end(self, child: _Child) -> None:
        """Kills the child; its pipes are closed once no run uses them (runs polling them see EOF)."""
        kill(child.proc)
        child.alive = False
        if self._children is not None:
            self._children.discard(child.proc)
        for stream in (child.proc.stdin, child.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        child.stderr.close()
        if child.users == 0:
            child.close_pipes()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._child is not None:
                self._end(self._child)
                self._child = None
            os.close(self._fd)      # the mapping itself goes with the last view of it

    def kill_child(self) -> None:
        """Ends the child now, as a crash would (tests, shutdown)."""
        child = self._child
        if child is not None:
            kill(child.proc)

    # ---------------------------------------------------------------- runs

    def labels(self, images: np.ndarray, run_options=None, timeout_s: float | None = None) -> np.ndarray:
        """int32 [n]: FAILED_LABEL where the logits are not all finite. Raises DefenseFailure when
        the defense errs, crashes or times out (`timeout_s`, default the worker's), Unavailable
        when no child can be started."""
        n = images.shape[0]
        if n > self.capacity:     # never from the batcher (capacity >= its largest run): split
            return np.concatenate([self.labels(images[a:a + self.capacity], timeout_s=timeout_s)
                                   for a in range(0, n, self.capacity)])
        slot = self._free.get()
        try:
            for attempt in (0, 1):
                try:
                    return self._run(slot, images, timeout_s or self.timeout_s)
                except _WorkerLost as error:
                    if attempt:
                        raise DefenseFailure(str(error), timed_out=error.for_timeout) from None
            raise AssertionError("unreachable")
        finally:
            self._free.put(slot)

    def _run(self, slot: int, images: np.ndarray, timeout_s: float) -> np.ndarray:
        self.start()
        with self._lock:
            child = self._child
            if child is None or not child.alive:
                raise _WorkerLost("the worker is gone")
            child.users += 1
        try:
            return self._run_on(child, slot, images, timeout_s)
        finally:
            with self._lock:
                child.users -= 1
                if child.users == 0 and not child.alive:
                    child.close_pipes()

    def _run_on(self, child: _Child, slot: int, images: np.ndarray, timeout_s: float) -> np.ndarray:
        n = images.shape[0]
        self._inputs[slot][:n] = images
        try:
            os.write(child.requests[slot], _REQUEST.pack(slot, n))
            answer = child.answer(slot, timeout_s)
        except TimeoutError:
            child.blamed = slot
            log.warning("defense %s: no answer within %.3g s; ending its worker", self.name, timeout_s)
            self._lost(child)
            raise DefenseFailure(f"no answer within {timeout_s:g} s", timed_out=True) from None
        except OSError:
            answer = None
        if answer is None:
            detail = tail(child.stderr) if not child.stderr.closed else ""   # before _lost closes it
            self._lost(child)
            if child.blamed is not None and child.blamed != slot:
                raise _WorkerLost("the worker was ended for another run's time-out", for_timeout=True)
            how = describe_exit(child.proc.poll())
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
                self._child = None
            if child.alive:
                self._end(child)


def _read_exact(stream, size: int, timeout_s: float) -> bytes:
    """Reads `size` bytes from a pipe within timeout_s (the worker's hello)."""
    fd = stream.fileno()
    poll = select.poll()
    poll.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer")
        if not poll.poll(left * 1e3 + 1):
            continue
        chunk = os.read(fd, size - len(out))
        if not chunk:
            break
        out += chunk
    return out


# ---------------------------------------------------------------- the child's side


def worker_child() -> None:
    """Reads its set-up and the model from stdin, loads the session, then serves runs: one
    thread per slot, each reading its request pipe and writing its answer pipe. Ends when stdin
    closes (the server went away)."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    slots, capacity, num_classes, max_chunk, threads, size = struct.unpack("<IIIIII", _read(stdin, 24))
    fd, *fds = struct.unpack(f"<{1 + 2 * slots}I", _read(stdin, 4 * (1 + 2 * slots)))
    (mode_len,) = struct.unpack("<I", _read(stdin, 4))
    mode = _read(stdin, mode_len).decode()
    data = _read(stdin, size)

    import onnxruntime as ort

    from arena.ground.inference import DefenseModel, providers, session_options

    options = session_options(threads)
    options.log_severity_level = 4     # ORT's own error lines would grow the stderr file per failed run
    model = DefenseModel("worker", ort.InferenceSession(data, options, providers=providers()), mode, max_chunk,
                         len(data))
    del data
    in_bytes = capacity * IMAGE_VALUES * 4
    out_bytes = capacity * num_classes * 4
    shared = mmap.mmap(fd, slots * (in_bytes + out_bytes))
    inputs = [np.frombuffer(shared, np.float32, capacity * IMAGE_VALUES, k * (in_bytes + out_bytes))
              .reshape(capacity, *IMAGE_SHAPE) for k in range(slots)]
    outputs = [np.frombuffer(shared, np.float32, capacity * num_classes, k * (in_bytes + out_bytes) + in_bytes)
               for k in range(slots)]

    failures = [0]

    def serve(slot: int, requests: int, answers: int) -> None:
        while True:
            raw = b""
            while len(raw) < _REQUEST.size:
                chunk = os.read(requests, _REQUEST.size - len(raw))
                if not chunk:
                    os._exit(0)
                raw += chunk
            _, n = _REQUEST.unpack(raw)
            try:
                if not 0 < n <= capacity:
                    raise ValueError(f"{n} images in a slot of {capacity}")
                logits = model.logits(inputs[slot][:n])
                rows, classes = logits.shape
                if logits.dtype != np.float32 or rows * classes > capacity * num_classes:
                    raise ValueError(f"logits of shape {list(logits.shape)} and type {logits.dtype}")
                outputs[slot][:rows * classes] = logits.reshape(-1)
            except Exception as error:
                failures[0] += 1
                if failures[0] <= LOGGED_FAILURES:      # the first ones say why; the file stays small
                    print(f"run failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}",
                          file=sys.stderr, flush=True)
                os.write(answers, _ANSWER.pack(slot, FAILED, 0, 0))
                continue
            os.write(answers, _ANSWER.pack(slot, OK, rows, classes))

    for k in range(slots):
        threading.Thread(target=serve, args=(k, fds[2 * k], fds[2 * k + 1]), daemon=True).start()
    out.write(_HELLO.pack(READY))
    stdin.read()                        # until the server closes it or dies
    os._exit(0)


def _read(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        os._exit(3)
    return data
