"""Keep child processes running: restart one that exits unexpectedly, with backoff.

The launcher (`jmt/launch.py`) runs the action server, every Rasa replica and every
gateway worker as a `Child` of one `Supervisor`. A child that exits (a crash, the
kernel's OOM killer) is started again after a delay that doubles with each quick
failure (1 s, 2 s, 4 s … up to 30 s) and goes back to 1 s once the child has stayed up
for `stable_after` seconds; the other children keep serving meanwhile. Everything stops
only when asked (`request_stop`, wired to Ctrl-C/SIGTERM): SIGTERM to every child, then
SIGKILL to those still running after the grace period.

The loop wakes at least every `tick` seconds (never spins); work other threads hand it
(`call`) runs in the loop's thread, so every child is started by that one thread (a
child gets SIGTERM if the launcher dies: Linux ties that to the thread that forked).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover — runs in the child before exec
    """The child gets SIGTERM when the launcher dies (even by SIGKILL): no orphaned Rasa
    keeping its port and a gigabyte of memory."""
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001, S110 — best effort; never stop a child from starting
        pass


def _before_exec(niceness: int) -> Callable[[], None]:
    def prepare() -> None:  # pragma: no cover — runs in the child before exec
        if _libc is not None:
            _die_with_parent()
        if niceness:
            os.nice(niceness)

    return prepare


_libc: Any = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number `failures` + 1: `initial` doubling up to `maximum`."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0  # up this long: the next exit counts as the first failure

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, failures - 1)))


@dataclass(eq=False)
class Child:
    """One supervised process. `command` and `environment` are called at every start, so a
    restart picks up what changed since (e.g. the live model, the replica list)."""

    name: str
    command: Callable[[], list[str]]
    environment: Callable[[], Mapping[str, str]] = lambda: os.environ
    cwd: Path | None = None
    pass_fds: tuple[int, ...] = ()
    stdout: IO[Any] | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row, each after less than `stable_after` seconds
    restart_at: float | None = None  # when a pending restart is due (monotonic)
    restarts: int = 0
    retiring: bool = False  # being stopped on purpose: its exit is not a crash
    keep_alive: bool = True  # False while on trial (a new Rasa starting): an exit is final
    niceness: int = 0  # added to the launcher's (a new Rasa loads in the background)
    history: list[float] = field(default_factory=list)  # restart delays, for tests/logs

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(
        self, *, backoff: Backoff | None = None, grace: float = 20.0, tick: float = 0.5
    ) -> None:
        self.backoff = backoff or Backoff()
        self.grace = grace
        self.tick = tick
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._tasks: list[Callable[[], None]] = []
        self._loop_thread: int | None = None

    # --- children ---

    def start(self, child: Child) -> Child:
        """Start `child` now and keep it running. Call from the loop's thread (or before
        `run`); other threads use `call(lambda: supervisor.start(child))`."""
        child.retiring = False
        self._spawn(child)
        if child not in self.children:
            self.children.append(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.command(),
            cwd=child.cwd,
            env=dict(child.environment()),
            pass_fds=child.pass_fds,
            stdout=child.stdout,
            stderr=subprocess.STDOUT if child.stdout is not None else None,
            preexec_fn=_before_exec(child.niceness),  # noqa: PLW1509
        )
        child.started_at = time.monotonic()
        child.restart_at = None

    def retire(self, child: Child, *, grace: float | None = None) -> int | None:
        """Stop `child` on purpose (no restart): SIGTERM, SIGKILL after `grace` seconds.
        Blocks until it has exited; safe from any thread. Returns its exit code."""
        child.retiring = True
        with contextlib.suppress(ValueError):  # the loop may have dropped it already
            self.children.remove(child)
        return _stop_processes([child], self.grace if grace is None else grace).get(child.name)

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` in the loop's thread and return its result (for other threads)."""
        if self._loop_thread in (None, threading.get_ident()):
            return function()
        future: Future = Future()
        self._calls.put((function, future))
        return future.result()

    def every_tick(self, task: Callable[[], None]) -> None:
        """Run `task` in the loop at every tick (cheap checks only: it delays restarts)."""
        self._tasks.append(task)

    # --- the loop ---

    def request_stop(self, *_: object) -> None:
        """Signal-handler safe: the loop notices within one tick."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Supervise until `request_stop`; then stop every child."""
        self._loop_thread = threading.get_ident()
        try:
            while not self._stop.wait(self._wait_time()):
                self.step()
        finally:
            self._loop_thread = None
            logger.info("stopping every process")
            self.stop_all()

    def _wait_time(self) -> float:
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        if not due:
            return self.tick
        return max(0.0, min(self.tick, min(due) - time.monotonic()))

    def step(self) -> None:
        """One pass: run handed-over calls and tasks, notice exits, restart what is due."""
        while True:
            try:
                function, future = self._calls.get_nowait()
            except queue.Empty:
                break
            try:
                future.set_result(function())
            except BaseException as error:  # noqa: BLE001 — handed back to the caller
                future.set_exception(error)
        for task in list(self._tasks):
            try:
                task()
            except Exception:
                logger.exception("a supervisor task failed")
        now = time.monotonic()
        for child in list(self.children):
            if child.retiring or child.process is None:
                continue
            if child.restart_at is None:
                code = child.process.poll()
                if code is None:
                    continue
                uptime = now - child.started_at
                if not child.keep_alive:
                    with contextlib.suppress(ValueError):
                        self.children.remove(child)
                    logger.error(
                        "%s (pid %s) exited with %s", child.name, child.pid, _describe(code)
                    )
                    continue
                child.failures = 1 if uptime >= self.backoff.stable_after else child.failures + 1
                delay = self.backoff.delay(child.failures)
                child.history.append(delay)
                child.restart_at = now + delay
                logger.error(
                    "%s (pid %s) exited with %s after %.0f s; restarting in %.0f s",
                    child.name,
                    child.pid,
                    _describe(code),
                    uptime,
                    delay,
                )
            elif now >= child.restart_at:
                try:
                    self._spawn(child)
                except OSError as error:
                    child.failures += 1
                    child.restart_at = now + self.backoff.delay(child.failures)
                    logger.error("%s could not be started: %s", child.name, error)
                    continue
                child.restarts += 1
                logger.warning("%s restarted (pid %s)", child.name, child.pid)

    def stop_all(self) -> None:
        children, self.children = self.children, []
        for child in children:
            child.retiring = True
        _stop_processes(children, self.grace)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _stop_processes(children: list[Child], grace: float) -> dict[str, int | None]:
    """SIGTERM to every running child, then SIGKILL to those still running after `grace`."""
    running = [c for c in children if c.running()]
    for child in running:
        assert child.process is not None
        logger.info("stopping %s (pid %s)", child.name, child.pid)
        try:
            child.process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    codes: dict[str, int | None] = {}
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s (pid %s) ignored SIGTERM for %.0f s: SIGKILL", child.name, child.pid, grace
            )
            child.process.kill()
            child.process.wait()
        codes[child.name] = child.process.returncode
    return codes
