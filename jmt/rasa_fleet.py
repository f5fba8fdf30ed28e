"""The Rasa replicas the launcher runs, and a model promotion without a pause.

Replica `i` listens on `RASA_PORT + i` or, after an odd number of promotions, on its
spare port `RASA_PORT + RASA_REPLICAS + i` (blue/green). The live list of replica URLs
is written to `$JMT_VAR_DIR/rasa-urls.json` as `{"urls": [...], "generation": n}`
(temporary file + rename, so a reader never sees half a file); the gateway's Rasa pool
re-reads it when it changes, and a gateway worker (re)started by the launcher also gets
it as `RASA_URLS`.

A promotion (`jmt model promote`, through `LauncherControl` in jmt/model.py) never
touches a serving process: for each replica in turn the launcher starts a NEW `rasa run`
with the new model on the replica's other port, waits until its `GET /status` names the
new model, switches that replica's URL in rasa-urls.json (a new generation), waits
`drain` seconds for requests already sent to the old process, and only then stops it
(SIGTERM: Sanic finishes what it is answering). Rasa 3.6 loads a model inside its event
loop (PUT /model pauses every conversation for ~20 s); here the loading happens in a
process nobody is talking to yet. If a new process fails to come up, nothing more is
switched, replicas already switched go back to the old model the same way, and the
error is the promotion's answer. Conversations continue: every process reads the same
tracker store (the SQLite file in development, PostgreSQL with several replicas).

The control channel is a folder (`$JMT_VAR_DIR/control/`): the CLI drops
`promote-<id>.json` (`{"id", "model"}`), the launcher answers with `result-<id>.json`
(`{"id", "ok", "model", "urls", "error"}`). `$JMT_VAR_DIR/launcher.json` says a launcher
is running (its pid), which model it serves and where. One launcher per folder: it holds
an exclusive lock on `$JMT_VAR_DIR/launcher.lock` for its life (`jmt.launch.hold_var_dir`),
and a second one started on the same folder refuses, naming the first one's pid.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jmt.supervisor import Child, Supervisor

logger = logging.getLogger(__name__)

URLS_FILE = "rasa-urls.json"
STATE_FILE = "launcher.json"
CONTROL_DIR = "control"
# A new Rasa loads its model at the lowest CPU priority: measured with 10, replies during a
# promotion doubled at p50 on two cores (the loader still took its share of both).
LOADING_NICENESS = 19
# Parsed by a new Rasa before it takes traffic. Its first parse pays TensorFlow's tracing
# and the encoder's first allocations: 4.9 s measured on a loaded machine, against
# 0.05-0.4 s for the next ones — a resident's message must not be that first parse. Each
# length bucket is traced separately, so the texts run from one word to a long complaint.
WARM_UP_TEXTS = (
    "你好",
    "身份证丢了怎么补办",
    "救命啊有人砸门",
    "有人冒充公安打电话让我把钱转到安全账户，我已经转了两万，现在还在通话",
    "我家楼上每天晚上装修到十一点，电钻声音特别大，孩子第二天要上学根本睡不着，找过物业"
    "好几次也没有人管，请问这种情况应该向哪里反映，能不能请社区民警帮忙协调一下",
)
WARM_UP_ROUNDS = 2


class FleetError(Exception):
    """A replica did not come up; the message says which and why."""


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _restore_priority(child: Child) -> None:
    """Back to the launcher's CPU priority once the new process serves — every thread of
    it: on Linux a nice value belongs to a thread, and TensorFlow's pools, started while
    loading, would otherwise keep serving at the loading priority. Raising a priority
    needs CAP_SYS_NICE (or RLIMIT_NICE); without it the process keeps the lower priority
    until its next restart, which is logged."""
    if child.pid is None:
        return
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{child.pid}/task")]
    except OSError:  # gone, or no /proc: the process's main thread at least
        threads = [child.pid]
    try:
        for tid in threads:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, ours)
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
    except PermissionError:
        logger.warning(
            "%s keeps nice +%s (no CAP_SYS_NICE to restore it): it serves at a lower CPU "
            "priority until it is restarted",
            child.name,
            LOADING_NICENESS,
        )


def model_file_name(model: Path) -> str:
    """What Rasa's GET /status calls the model (`model_file`) once it has loaded it."""
    return model.name


@dataclass(eq=False)
class Replica:
    index: int
    ports: tuple[int, int]  # its two ports: one serving, one for the next promotion
    side: int
    model: Path  # what its process was started with (a file, or the models folder)
    child: Child

    @property
    def port(self) -> int:
        return self.ports[self.side]


class RasaFleet:
    def __init__(
        self,
        supervisor: Supervisor,
        *,
        command: Callable[[int, Path], list[str]],  # (port, model) -> `rasa run ...`
        environment: Callable[[], dict[str, str]],
        cwd: Path,
        host: str,  # where clients reach the replicas
        token: str,
        base_port: int,
        replicas: int,
        var_dir: Path,
        drain: float = 10.0,
        start_timeout: float = 300.0,
        stdout: IO[Any] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self._command = command
        self._environment = environment
        self._cwd = cwd
        self.host = host
        self._token = token
        self.base_port = base_port
        self.count = replicas
        self.var_dir = var_dir
        self.drain = drain
        self.start_timeout = start_timeout
        self._stdout = stdout
        self.replicas: list[Replica] = []
        self._promoting: threading.Thread | None = None
        self._lock = threading.Lock()  # one promotion at a time

    # --- where the replicas are ---

    def ports_of(self, index: int) -> tuple[int, int]:
        return (self.base_port + index, self.base_port + self.count + index)

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def urls(self) -> list[str]:
        return [self.url(r.port) for r in self.replicas]

    @property
    def model(self) -> Path | None:
        return self.replicas[0].model if self.replicas else None

    def publish(self) -> int:
        """Write the live URLs (a new generation) and the launcher's state; returns the
        generation."""
        # Whoever can write here can make the launcher load a model: owner only, like the
        # generated secrets beside it.
        self.control_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
        previous = read_json(self.var_dir / URLS_FILE) or {}
        generation = int(previous.get("generation") or 0) + 1
        write_json_atomically(
            self.var_dir / URLS_FILE, {"urls": self.urls(), "generation": generation}
        )
        model = self.model
        write_json_atomically(
            self.var_dir / STATE_FILE,
            {
                "pid": os.getpid(),
                "urls": self.urls(),
                "model": str(model) if model else None,
                "serving": self.serving_name(),
                "control": str(self.var_dir / CONTROL_DIR),
            },
        )
        return generation

    def serving_name(self) -> str | None:
        """The model file the replicas report in GET /status (None before they answer)."""
        return self._status(self.url(self.replicas[0].port)) if self.replicas else None

    def withdraw(self) -> None:
        """The launcher is stopping: no one should send promotions to it any more."""
        (self.var_dir / STATE_FILE).unlink(missing_ok=True)

    # --- starting ---

    def _child(self, index: int, port: int, model: Path) -> Child:
        return Child(
            name=f"rasa-{index} (:{port})",
            command=lambda: self._command(port, model),
            environment=self._environment,
            cwd=self._cwd,
            stdout=self._stdout,
        )

    def start(self, model: Path) -> None:
        """Start every replica on its first port (from the loop's thread)."""
        for index in range(self.count):
            ports = self.ports_of(index)
            child = self.supervisor.start(self._child(index, ports[0], model))
            self.replicas.append(Replica(index, ports, 0, model, child))

    def wait_ready(self, timeout: float | None = None) -> None:
        for replica in self.replicas:
            self._wait_serving(replica.child, self.url(replica.port), None, timeout)

    def _status(self, url: str) -> str | None:
        try:
            with urllib.request.urlopen(  # noqa: S310 — a local replica
                f"{url}/status?token={self._token}", timeout=5
            ) as response:
                return str(json.loads(response.read()).get("model_file") or "")
        except (OSError, ValueError):  # never logged: the URL carries the token
            return None

    def _wait_serving(
        self, child: Child, url: str, model: Path | None, timeout: float | None
    ) -> None:
        """Until `url` answers /status (naming `model` when given); FleetError when the
        process exits, the launcher stops or `timeout` passes."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while time.monotonic() < deadline and not self.supervisor.stopping:
            if child.process is None or child.process.poll() is not None:
                raise FleetError(f"{child.name} exited while starting; see its output")
            served = self._status(url)
            if served is not None and (model is None or served == model_file_name(model)):
                return
            if served:
                logger.info("%s still serves %s, waiting for %s", child.name, served, model)
            time.sleep(1)
        if self.supervisor.stopping:
            raise FleetError("the launcher is stopping")
        raise FleetError(f"{child.name} did not answer GET /status in time")

    def _warm_up(self, child: Child, url: str) -> None:
        """Parse WARM_UP_TEXTS on a new process before it takes traffic (still at the lower
        CPU priority), so no resident's message pays its first-parse cost. A process that
        cannot parse is not switched to: FleetError."""
        started = time.monotonic()
        for _ in range(WARM_UP_ROUNDS):
            for text in WARM_UP_TEXTS:
                if self.supervisor.stopping:
                    raise FleetError("the launcher is stopping")
                request = urllib.request.Request(
                    f"{url}/model/parse?token={self._token}",
                    data=json.dumps({"text": text}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                        json.loads(response.read())
                except (OSError, ValueError) as error:  # the URL carries the token: not logged
                    raise FleetError(
                        f"{child.name} does not parse ({type(error).__name__}); not switched"
                    ) from None
        logger.info("%s warmed up in %.1f s", child.name, time.monotonic() - started)

    # --- promotion ---

    def promote(self, model: Path) -> None:
        """Replica by replica: a new process with `model` on the spare port, switch, drain
        the old one. Raises FleetError (after putting switched replicas back) on failure."""
        if not model.is_file():
            raise FleetError(f"{model} does not exist")
        with self._lock:
            switched: list[tuple[Replica, Path]] = []
            for replica in list(self.replicas):
                old_model = replica.model
                try:
                    self._replace(replica, model)
                except FleetError:
                    for done, previous in reversed(switched):
                        try:
                            self._replace(done, previous)
                        except FleetError:
                            logger.exception(
                                "rasa-%s could not go back to %s", done.index, previous
                            )
                    raise
                switched.append((replica, old_model))

    def _replace(self, replica: Replica, model: Path) -> None:
        side = 1 - replica.side
        port = replica.ports[side]
        candidate = self._child(replica.index, port, model)
        candidate.keep_alive = False  # on trial: if it dies while loading, that is the answer
        # Loading a model takes a core for a minute or more: at a lower CPU priority, so
        # the replicas that serve meanwhile keep answering quickly.
        candidate.niceness = LOADING_NICENESS
        logger.info("rasa-%s: starting %s on :%s", replica.index, model.name, port)
        started = time.monotonic()
        self.supervisor.call(lambda: self.supervisor.start(candidate))
        try:
            self._wait_serving(candidate, self.url(port), model, None)
            self._warm_up(candidate, self.url(port))
        except FleetError:
            self.supervisor.retire(candidate, grace=5)
            raise
        candidate.keep_alive = True
        candidate.niceness = 0  # a restart after a crash starts at the usual priority
        _restore_priority(candidate)
        old = replica.child
        replica.child, replica.side, replica.model = candidate, side, model
        generation = self.publish()
        logger.info(
            "rasa-%s: %s serves %s after %.0f s; rasa-urls.json generation %s; draining "
            "%s for %.0f s",
            replica.index,
            self.url(port),
            model.name,
            time.monotonic() - started,
            generation,
            old.name,
            self.drain,
        )
        time.sleep(self.drain)  # the gateway re-reads the list; requests in flight finish
        self.supervisor.retire(old)

    # --- the control folder ---

    def control_dir(self) -> Path:
        return self.var_dir / CONTROL_DIR

    def check_requests(self) -> None:
        """Every tick: take the oldest promotion request when none is running."""
        if self._promoting is not None and self._promoting.is_alive():
            return
        try:
            requests = sorted(
                self.control_dir().glob("promote-*.json"), key=lambda p: p.stat().st_mtime
            )
        except OSError:
            return
        for request in requests:
            taken = request.with_suffix(".taken")
            try:
                os.replace(request, taken)
            except OSError:
                continue
            data = read_json(taken) or {}
            taken.unlink(missing_ok=True)
            self._promoting = threading.Thread(
                target=self._answer, args=(data,), name="promotion", daemon=True
            )
            self._promoting.start()
            return

    def _answer(self, request: dict[str, Any]) -> None:
        ident = str(request.get("id") or "")
        if not ident.isalnum():
            logger.error("ignoring a promotion request without a valid id")
            return
        model = Path(str(request.get("model") or ""))
        result: dict[str, Any] = {"id": ident, "model": str(model)}
        try:
            self.promote(model)
        except FleetError as error:
            logger.error("promotion of %s failed: %s", model.name, error)
            result.update(ok=False, error=str(error))
        except Exception as error:
            logger.exception("promotion of %s failed", model.name)
            result.update(ok=False, error=f"{type(error).__name__}: {error}")
        else:
            logger.info("promotion of %s done: %s", model.name, ", ".join(self.urls()))
            result.update(ok=True, error=None)
        result["urls"] = self.urls()
        result["serving"] = self.serving_name()
        write_json_atomically(self.control_dir() / f"result-{ident}.json", result)
