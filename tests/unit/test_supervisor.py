"""The supervisor with tiny stand-in children (`python -c` sleepers), not real servers:
a killed child is restarted, the others keep their PIDs, the backoff grows and resets,
a stop (as on SIGTERM) stops everything, and a retired child is not restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jmt.supervisor import Backoff, Child, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0): read its state.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    supervisor = Supervisor(
        backoff=Backoff(initial=0.05, maximum=0.4, stable_after=5.0), grace=5.0, tick=0.02
    )
    yield supervisor
    supervisor.request_stop()
    until(lambda: supervisor._loop_thread is None)
    supervisor.stop_all()  # when the loop never ran


def run_in_background(supervisor: Supervisor) -> threading.Thread:
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    return thread


def test_a_killed_child_is_restarted_and_the_others_keep_their_pids(
    supervisor: Supervisor,
) -> None:
    children = [supervisor.start(Child(name, lambda: SLEEPER)) for name in ("a", "rasa", "b")]
    pids = [c.pid for c in children]
    thread = run_in_background(supervisor)
    rasa = children[1]
    assert rasa.pid is not None
    os.kill(rasa.pid, signal.SIGKILL)  # as the OOM killer does
    until(lambda: rasa.restarts == 1 and rasa.running())
    assert rasa.pid != pids[1]
    assert [children[0].pid, children[2].pid] == [pids[0], pids[2]]
    assert all(c.running() for c in children)
    supervisor.request_stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert all(c.process is not None and c.process.returncode is not None for c in children)


def test_the_backoff_doubles_up_to_its_maximum_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, stable_after=60.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_child_that_keeps_crashing_waits_longer_each_time(supervisor: Supervisor) -> None:
    crasher = supervisor.start(Child("crasher", lambda: CRASHER))
    steady = supervisor.start(Child("steady", lambda: SLEEPER))
    steady_pid = steady.pid
    run_in_background(supervisor)
    until(lambda: len(crasher.history) >= 5)
    assert crasher.history[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]
    assert steady.pid == steady_pid and steady.running()


def test_a_child_that_stayed_up_starts_the_backoff_afresh() -> None:
    supervisor = Supervisor(
        backoff=Backoff(initial=0.05, maximum=0.4, stable_after=0.3), grace=5.0, tick=0.02
    )
    child = supervisor.start(Child("flaky", lambda: SLEEPER))
    child.failures = 4  # as after a run of quick crashes
    thread = run_in_background(supervisor)
    time.sleep(0.5)  # longer than stable_after
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    until(lambda: child.restarts == 1)
    assert child.history == [0.05]
    supervisor.request_stop()
    thread.join(timeout=30)


def test_sigterm_to_the_launcher_stops_every_child(tmp_path: Path) -> None:
    """A real process running the supervisor with the launcher's signal wiring."""
    pids = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import signal, sys
        from jmt.supervisor import Child, Supervisor
        supervisor = Supervisor(grace=5.0, tick=0.05)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        children = [supervisor.start(Child(n, lambda: {SLEEPER!r})) for n in "abc"]
        open({str(pids)!r}, "w").write(" ".join(str(c.pid) for c in children))
        supervisor.run()
        """
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    until(lambda: pids.exists() and len(pids.read_text().split()) == 3)
    children = [int(pid) for pid in pids.read_text().split()]
    assert not any(gone(pid) for pid in children)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=30) == 0
    until(lambda: all(gone(pid) for pid in children))


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)",
    ]
    supervisor = Supervisor(grace=0.5, tick=0.02)
    child = supervisor.start(Child("stubborn", lambda: stubborn, stdout=subprocess.PIPE))
    assert child.process is not None and child.process.stdout is not None
    assert child.process.stdout.readline().strip() == b"ready"  # its handler is installed
    started = time.monotonic()
    supervisor.stop_all()
    assert child.process.returncode == -signal.SIGKILL
    assert time.monotonic() - started >= 0.5
    child.process.stdout.close()


def test_a_retired_child_is_not_restarted(supervisor: Supervisor) -> None:
    old = supervisor.start(Child("rasa-0 (old)", lambda: SLEEPER))
    run_in_background(supervisor)
    code = supervisor.retire(old, grace=5.0)
    assert code == -signal.SIGTERM
    time.sleep(0.3)  # several ticks and backoff delays
    assert old.restarts == 0 and not old.running()
    assert old not in supervisor.children


def test_a_command_is_built_again_at_each_restart(supervisor: Supervisor) -> None:
    built: list[int] = []

    def command() -> list[str]:
        built.append(len(built))
        return SLEEPER

    child = supervisor.start(Child("rasa-0", command))
    run_in_background(supervisor)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    until(lambda: child.restarts == 1)
    assert built == [0, 1]


def test_calls_from_other_threads_run_in_the_loop(supervisor: Supervisor) -> None:
    run_in_background(supervisor)
    until(lambda: supervisor._loop_thread is not None)
    seen: list[int] = []
    result = supervisor.call(lambda: seen.append(threading.get_ident()) or 42)
    assert result == 42 and seen == [supervisor._loop_thread]
    with pytest.raises(ZeroDivisionError):
        supervisor.call(lambda: 1 // 0)
