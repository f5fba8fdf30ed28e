"""Models: the quality gate, promotion into the running Rasa server, rollback, the list.

A model is `jmt-<data hash>.tar.gz`, versioned by the hash of the data it was trained on
(`jmt.train`). Two small files beside the models record what is live:

- `LIVE` — the model the running Rasa server was last given (a name in the models folder,
  or an absolute path);
- `HISTORY` — one tab-separated line per promotion or rollback:
  `time  action  previous-model  previous-data-hash  new-model  new-data-hash`.
  A rollback goes back to the model the latest not-yet-undone promotion replaced.

`jmt nlu evaluate --compare` validates the data, trains the candidate (only if the data
changed), evaluates candidate and live on the held-out set and writes
`reports/compare/report.md` and `gate.json`. `jmt model promote` runs that gate unless a
fresh result for exactly that candidate exists, and only when it passes hands the model
to the running launcher (`make run`, jmt/launch.py): it starts a new Rasa process per
replica with the new model, switches traffic to it once its `GET /status` names the
model, and stops the old one after a drain (jmt/rasa_fleet.py) — no pause, conversations
continue from the shared tracker store.

When no launcher runs Rasa (Rasa managed by someone else), `--put-model` keeps the old
path: Rasa's `PUT /model` on the serving process, then `GET /status`. Rasa 3.6 loads the
model inside its event loop there: every message sent meanwhile waits (18–24 s on 2 busy
cores) and is answered afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from integrations.rasa import redact
from jmt import paths
from jmt.evaluate import (
    COMPARE_REPORTS,
    Evaluation,
    GateResult,
    comparison_markdown,
    evaluate_model,
    gate,
)
from jmt.rasa_fleet import CONTROL_DIR, STATE_FILE, read_json, write_json_atomically
from jmt.train import data_hash, metadata_path, model_path, train

logger = logging.getLogger(__name__)

LIVE_FILE = "LIVE"
HISTORY_FILE = "HISTORY"
GATE_FILE = "gate.json"
_HASH_IN_NAME = re.compile(r"^jmt-([0-9a-f]{12})")


class PromotionError(Exception):
    """A promotion or rollback was refused or failed; the message says why."""


# --- the registry: LIVE, HISTORY, model metadata ---


def model_hash(model: Path) -> str:
    """The data hash a model was trained on (its metadata, else its name), or `?`."""
    meta = metadata_path(model)
    if meta.exists():
        return str(json.loads(meta.read_text()).get("data_hash") or "?")
    match = _HASH_IN_NAME.match(model.name)
    return match.group(1) if match else "?"


def _stored(model: Path, models_dir: Path) -> str:
    model = model.resolve()
    return model.name if model.parent == models_dir.resolve() else str(model)


def _resolve(stored: str, models_dir: Path) -> Path:
    path = Path(stored)
    return path if path.is_absolute() else models_dir / path


def read_live(models_dir: Path = paths.MODELS) -> Path | None:
    file = models_dir / LIVE_FILE
    if not file.exists() or not file.read_text().strip():
        return None
    return _resolve(file.read_text().strip(), models_dir)


def write_live(model: Path, models_dir: Path = paths.MODELS) -> None:
    (models_dir / LIVE_FILE).write_text(_stored(model, models_dir) + "\n")


def models(models_dir: Path = paths.MODELS) -> list[Path]:
    """Every model in the folder, newest first (the order `rasa run --model` uses)."""
    return sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)


def default_live(candidate: Path, models_dir: Path = paths.MODELS) -> Path | None:
    """The model LIVE names; without LIVE, the newest model other than the candidate."""
    live = read_live(models_dir)
    if live is not None:
        return live
    others = [m for m in models(models_dir) if m.resolve() != candidate.resolve()]
    return others[0] if others else None


@dataclass(frozen=True)
class HistoryEntry:
    time: str
    action: str  # promote | rollback
    previous: str  # a stored model name, or "-" when nothing was live
    previous_hash: str
    model: str
    model_hash: str


def read_history(models_dir: Path = paths.MODELS) -> list[HistoryEntry]:
    file = models_dir / HISTORY_FILE
    if not file.exists():
        return []
    entries = []
    for line in file.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 6:
            entries.append(HistoryEntry(*fields))
    return entries


def record(action: str, previous: Path | None, model: Path, models_dir: Path) -> None:
    entry = HistoryEntry(
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        action=action,
        previous=_stored(previous, models_dir) if previous else "-",
        previous_hash=model_hash(previous) if previous else "-",
        model=_stored(model, models_dir),
        model_hash=model_hash(model),
    )
    with (models_dir / HISTORY_FILE).open("a") as file:
        file.write("\t".join(dataclasses.astuple(entry)) + "\n")
    write_live(model, models_dir)


def rollback_target(models_dir: Path = paths.MODELS) -> Path | None:
    """What the latest promotion not yet undone replaced (promotions push, rollbacks pop)."""
    stack: list[str] = []
    for entry in read_history(models_dir):
        if entry.action == "promote":
            stack.append(entry.previous)
        elif entry.action == "rollback" and stack:
            stack.pop()
    if not stack or stack[-1] == "-":
        return None
    return _resolve(stack[-1], models_dir)


def sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the gate ---


def _identity(model: Path | None) -> dict | None:
    if model is None:
        return None
    return {"path": str(model.resolve()), "sha256": sha256(model), "data_hash": model_hash(model)}


def run_gate(
    candidate: Path | None = None,
    live: Path | None = None,
    *,
    models_dir: Path = paths.MODELS,
    heldout: Path = paths.HELDOUT,
    reports_root: Path = COMPARE_REPORTS,
) -> GateResult:
    """Validate and train (only without an explicit candidate), evaluate both, write
    report.md and gate.json under reports_root."""
    if candidate is None:
        from jmt import validate

        try:
            validate.main()
        except SystemExit as failure:
            if failure.code not in (None, 0):
                return GateResult(False, [f"rasa data validate: {failure.code}"], [])
        try:
            candidate = train()
        except subprocess.CalledProcessError as failure:
            return GateResult(False, [f"training failed (exit {failure.returncode})"], [])
    if live is None:
        live = default_live(candidate, models_dir)
    reports_root.mkdir(parents=True, exist_ok=True)
    candidate_eval = evaluate_model(candidate, heldout, reports_root)
    live_eval: Evaluation | None = None
    if live is not None:
        same = live.resolve() == candidate.resolve()
        live_eval = candidate_eval if same else evaluate_model(live, heldout, reports_root)
    result = gate(candidate_eval, live_eval)
    write_gate(candidate, live, heldout, result, reports_root)
    report = comparison_markdown(candidate_eval, live_eval, result)
    (reports_root / "report.md").write_text(report, encoding="utf-8")
    return result


def write_gate(
    candidate: Path, live: Path | None, heldout: Path, result: GateResult, reports_root: Path
) -> None:
    verdict = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passed": result.passed,
        "reasons": result.reasons,
        "checks": result.checks,
        "candidate": _identity(candidate),
        "live": _identity(live),
        "heldout_sha256": sha256(heldout),
    }
    text = json.dumps(verdict, indent=2, ensure_ascii=False)
    (reports_root / GATE_FILE).write_text(text, encoding="utf-8")


def fresh_gate(
    candidate: Path, live: Path | None, heldout: Path, reports_root: Path
) -> GateResult | None:
    """The recorded gate result when it was for exactly these files (by content)."""
    file = reports_root / GATE_FILE
    if not file.exists() or not candidate.exists():
        return None
    verdict = json.loads(file.read_text(encoding="utf-8"))
    recorded_live = verdict.get("live")
    if (
        (verdict.get("candidate") or {}).get("sha256") != sha256(candidate)
        or verdict.get("heldout_sha256") != sha256(heldout)
        or (recorded_live or {}).get("sha256") != (sha256(live) if live else None)
    ):
        return None
    logger.info("using the gate result of %s for %s", verdict["time"], candidate.name)
    return GateResult(bool(verdict["passed"]), verdict["reasons"], verdict["checks"])


# --- the running Rasa server ---


class RasaModelAPI:
    """Rasa's model endpoints (the server runs with --enable-api)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 600.0) -> None:
        # Rasa's --auth-token: `?token=` on every call (errors below never print URLs).
        params = {"token": token} if token else None
        self._http = httpx.Client(base_url=url.rstrip("/"), params=params, timeout=timeout)
        self.url = url

    def serving(self) -> str:
        """The file name of the model the server has loaded (GET /status)."""
        try:
            response = self._http.get("/status")
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise PromotionError(
                f"Rasa at {self.url} did not answer GET /status: {redact(str(error))}"
            ) from error
        return str(response.json().get("model_file") or "")

    def load(self, model: Path) -> None:
        """PUT /model, then GET /status must name it. If loading fails, Rasa keeps the
        old model (it replaces its agent only after the new one is ready)."""
        try:
            response = self._http.put("/model", json={"model_file": str(model.resolve())})
        except httpx.HTTPError as error:
            raise PromotionError(
                f"PUT /model to {self.url} failed: {redact(str(error))}"
            ) from error
        if response.status_code != 204:
            raise PromotionError(
                f"Rasa refused {model.name} (HTTP {response.status_code}): {response.text[:300]}"
            )
        serving = self.serving()
        if serving != model.name:
            raise PromotionError(f"after PUT /model Rasa serves {serving!r}, not {model.name}")


class LauncherControl:
    """The running launcher's Rasa replicas (jmt/rasa_fleet.py): the same two calls as
    RasaModelAPI, but `load` asks the launcher for a switch without a pause and waits
    for its answer."""

    def __init__(self, var_dir: Path, state: dict, *, timeout: float = 1800.0) -> None:
        self.var_dir = var_dir
        self.state = state
        self.timeout = timeout
        self.url = ", ".join(state.get("urls") or []) or "the launcher"

    @classmethod
    def find(cls, var_dir: Path, *, timeout: float = 1800.0) -> LauncherControl | None:
        """The launcher that runs with this JMT_VAR_DIR, if one is alive."""
        state = read_json(var_dir / STATE_FILE)
        if not state or not _alive(int(state.get("pid") or 0)):
            return None
        return cls(var_dir, state, timeout=timeout)

    def serving(self) -> str:
        state = read_json(self.var_dir / STATE_FILE) or self.state
        return str(state.get("serving") or "")

    def load(self, model: Path) -> None:
        ident = uuid.uuid4().hex
        control = self.var_dir / CONTROL_DIR
        result_file = control / f"result-{ident}.json"
        write_json_atomically(
            control / f"promote-{ident}.json", {"id": ident, "model": str(model.resolve())}
        )
        logger.info("asked the launcher (pid %s) to switch to %s", self.state["pid"], model.name)
        deadline = time.monotonic() + self.timeout
        while (result := read_json(result_file)) is None:
            if not _alive(int(self.state["pid"])):
                raise PromotionError("the launcher stopped before it answered")
            if time.monotonic() > deadline:
                raise PromotionError(f"the launcher did not answer in {self.timeout:.0f} s")
            time.sleep(0.5)
        result_file.unlink(missing_ok=True)
        if not result.get("ok"):
            raise PromotionError(f"the launcher kept the old model: {result.get('error')}")
        if result.get("serving") != model.name:
            raise PromotionError(f"after the switch Rasa serves {result.get('serving')!r}")
        self.url = ", ".join(result.get("urls") or [])


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ModelServer = RasaModelAPI | LauncherControl


def model_server(
    *, put_model: bool, rasa_url: str | None, rasa_token: str | None, var_dir: Path | None
) -> ModelServer:
    """The launcher's replicas, or with `put_model` Rasa at `rasa_url` (PUT /model)."""
    if put_model:
        if not rasa_url:
            raise PromotionError("--put-model needs the Rasa server's URL (--rasa-url/RASA_URL)")
        return RasaModelAPI(rasa_url, token=rasa_token)
    if var_dir is None:
        from casework.settings import Settings

        var_dir = Settings.from_env().var_dir
    control = LauncherControl.find(var_dir)
    if control is None:
        raise PromotionError(
            f"no launcher is running with JMT_VAR_DIR={var_dir} (no live {STATE_FILE}): "
            "start it with `make run`, or, when Rasa is managed by someone else, pass "
            "--put-model (Rasa's PUT /model: replies pause 18-24 s while it loads)"
        )
    return control


def _warn_if_trackers_in_memory() -> None:
    endpoints = yaml.safe_load(paths.ENDPOINTS.read_text(encoding="utf-8")) or {}
    if not endpoints.get("tracker_store"):
        logger.warning(
            "%s has no tracker_store: Rasa keeps conversations in memory and a model "
            "switch starts every conversation in progress afresh",
            paths.ENDPOINTS.name,
        )


def _switch(api: ModelServer, model: Path, action: str, models_dir: Path) -> Path:
    """Load `model` into the server and record it; returns what was live before."""
    if not model.is_file():
        raise PromotionError(f"{model} does not exist")
    _warn_if_trackers_in_memory()
    serving = api.serving()  # the server is there before anything changes
    live = read_live(models_dir)
    # What is replaced is what the server runs; LIVE can be stale after a restart, since
    # `rasa run --model bot/models` serves the newest file.
    previous = live if live is not None and live.name == serving else None
    if previous is None and serving:
        if live is not None:
            logger.warning("LIVE names %s but Rasa serves %s", live.name, serving)
        previous = models_dir / serving
    if previous is not None and previous.resolve() == model.resolve():
        previous = live if live is not None and live.resolve() != model.resolve() else None
    api.load(model)
    record(action, previous, model, models_dir)
    return previous or model


def promote(
    *,
    rasa_url: str | None = None,
    rasa_token: str | None = None,
    model: Path | None = None,
    force: bool = False,
    put_model: bool = False,
    var_dir: Path | None = None,
    models_dir: Path = paths.MODELS,
    heldout: Path = paths.HELDOUT,
    reports_root: Path = COMPARE_REPORTS,
) -> Path:
    """Gate, then switch the running launcher's replicas (or, with `put_model`, PUT
    /model on Rasa at `rasa_url`); returns the model now live. `force` reruns the gate
    even when a fresh result exists; it never skips it."""
    candidate = model or model_path(data_hash())
    live = default_live(candidate, models_dir) if candidate.exists() else None
    result = None if force else fresh_gate(candidate, live, heldout, reports_root)
    if result is None:
        if model is None:
            result = run_gate(models_dir=models_dir, heldout=heldout, reports_root=reports_root)
        else:
            result = run_gate(
                candidate, live, models_dir=models_dir, heldout=heldout, reports_root=reports_root
            )
    if not result.passed:
        raise PromotionError(
            f"the gate refused {candidate.name}: "
            + "; ".join(result.reasons)
            + f" (see {reports_root / 'report.md'})"
        )
    api = model_server(
        put_model=put_model, rasa_url=rasa_url, rasa_token=rasa_token, var_dir=var_dir
    )
    live_now = read_live(models_dir)
    if api.serving() == candidate.name and (
        live_now is None or live_now.resolve() == candidate.resolve()
    ):  # e.g. the first promotion of the model `make run` started with: no reload
        if live_now is None:
            record("promote", None, candidate, models_dir)
        logger.info("Rasa at %s already serves %s; it is LIVE", api.url, candidate.name)
        return candidate
    previous = _switch(api, candidate, "promote", models_dir)
    logger.info(
        "promoted %s (was %s); Rasa at %s serves it", candidate.name, previous.name, api.url
    )
    return candidate


def rollback(
    *,
    rasa_url: str | None = None,
    rasa_token: str | None = None,
    put_model: bool = False,
    var_dir: Path | None = None,
    models_dir: Path = paths.MODELS,
) -> Path:
    """Back to the model the latest promotion replaced (no gate: it was live before),
    the same way `promote` switches."""
    target = rollback_target(models_dir)
    if target is None:
        raise PromotionError(f"nothing to roll back to ({models_dir / HISTORY_FILE})")
    api = model_server(
        put_model=put_model, rasa_url=rasa_url, rasa_token=rasa_token, var_dir=var_dir
    )
    previous = _switch(api, target, "rollback", models_dir)
    logger.info("rolled back to %s (was %s)", target.name, previous.name)
    return target


def describe_models(models_dir: Path = paths.MODELS) -> list[str]:
    """`jmt model list`: one line per model, newest first; * marks the live one."""
    live = read_live(models_dir)
    current = data_hash()
    lines = [f"  {'model':<34} {'data hash':<12} {'trained at':<24} training"]
    listed = models(models_dir)
    if live is not None and live.exists() and live not in listed:
        listed.insert(0, live)
    for model in listed:
        meta_file = metadata_path(model)
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        fingerprint = model_hash(model)
        notes = []
        if fingerprint == current:
            notes.append("matches the current data")
        if live is not None and model.resolve() == live.resolve():
            notes.append("LIVE")
        seconds = meta.get("training_seconds")
        lines.append(
            f"{'*' if 'LIVE' in notes else ' '} {_stored(model, models_dir):<34} "
            f"{fingerprint:<12} {meta.get('trained_at', '?'):<24} "
            f"{f'{seconds} s' if seconds is not None else '?':<9} {', '.join(notes)}".rstrip()
        )
    if live is None:
        lines.append("(no LIVE file yet: nothing was promoted; `rasa run` serves the newest)")
    return lines


# --- command line (wired into jmt/cli.py) ---


def add_nlu_evaluate_parser(nlu_commands: argparse._SubParsersAction) -> None:
    evaluate = nlu_commands.add_parser("evaluate", help="held-out evaluation; --compare: gate")
    evaluate.add_argument("--compare", action="store_true", help="candidate vs live, the gate")
    evaluate.add_argument("--candidate", type=Path, help="default: trained on the current data")
    evaluate.add_argument("--live", type=Path, help="default: bot/models/LIVE, else the newest")


def add_model_parser(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="promote, roll back and list models")
    actions = model.add_subparsers(dest="model_command", required=True)
    promote_parser = actions.add_parser(
        "promote", help="gate, then switch the running replicas without a pause"
    )
    promote_parser.add_argument("--model", type=Path, help="default: the current data's model")
    promote_parser.add_argument("--force", action="store_true", help="rerun a fresh gate")
    rollback_parser = actions.add_parser("rollback", help="back to the previous live model")
    for parser in (promote_parser, rollback_parser):
        parser.add_argument(
            "--put-model",
            action="store_true",
            help="no launcher runs Rasa: PUT /model on it (replies pause 18-24 s)",
        )
        parser.add_argument("--rasa-url", help="with --put-model; default: RASA_URL / RASA_PORT")
    actions.add_parser("list", help="models, their data hash and which is live")


def _rasa_url(args: argparse.Namespace) -> str:
    from casework.settings import Settings

    return args.rasa_url or Settings.from_env().rasa_url


def _rasa_token() -> str | None:
    """RASA_TOKEN (generated into var/ in development), as the running server has it."""
    from casework.settings import Settings

    return Settings.from_env().rasa_token


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def nlu_evaluate(args: argparse.Namespace) -> int:
    if not args.compare:
        from jmt.evaluate import main as evaluate_main

        sys.argv = ["jmt nlu evaluate"]
        evaluate_main()
        return 0
    result = run_gate(args.candidate, args.live)
    _say(f"report: {COMPARE_REPORTS / 'report.md'}")
    for check in result.checks:
        _say("  " + check)
    if result.passed:
        _say("gate PASSED")
        return 0
    _say("gate FAILED: " + "; ".join(result.reasons))
    return 1


def model_command(args: argparse.Namespace) -> int:
    try:
        if args.model_command == "promote":
            promote(
                rasa_url=_rasa_url(args),
                rasa_token=_rasa_token(),
                model=args.model,
                force=args.force,
                put_model=args.put_model,
            )
        elif args.model_command == "rollback":
            rollback(rasa_url=_rasa_url(args), rasa_token=_rasa_token(), put_model=args.put_model)
        else:
            for line in describe_models():
                _say(line)
    except PromotionError as error:
        sys.stderr.write(f"jmt model {args.model_command}: {error}\n")
        return 1
    return 0
