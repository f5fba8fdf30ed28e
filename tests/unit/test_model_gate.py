"""The quality gate on synthetic evaluation results, the comparison report, LIVE/HISTORY
bookkeeping, and promotion/rollback against a local stand-in for Rasa's model API."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from casework.cases import CATEGORIES
from jmt import cli
from jmt import model as models
from jmt.evaluate import (
    Evaluation,
    GateResult,
    Prediction,
    changed_examples,
    comparison_markdown,
    gate,
    summarise,
)

INTENT = {
    "emergency": "emergency",
    "fraud_suspicion": "report_fraud",
    "legal_help": "legal_help",
    "noise_complaint": "complain_noise",
    "dog_complaint": "complain_dog",
    "faq": "faq",
    "other": "greet",
}
PER_CATEGORY = 50
HASH_A, HASH_B, HASH_C = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"


def predictions(wrong: dict[tuple[str, int], str] | None = None) -> list[Prediction]:
    """50 held-out messages per category, all right except wrong[(category, i)] → predicted."""
    wrong = wrong or {}
    rows = []
    for category in CATEGORIES:
        for i in range(PER_CATEGORY):
            predicted = wrong.get((category, i), category)
            rows.append(
                Prediction(
                    text=f"{category} message {i}",
                    expected=category,
                    predicted=predicted,
                    intent_expected=INTENT[category],
                    intent_predicted=INTENT[predicted],
                    confidence=0.9,
                )
            )
    return rows


def evaluation(name: str, rows: list[Prediction]) -> Evaluation:
    model = Path(f"{name}.tar.gz")
    return Evaluation(model, summarise(model, rows), rows)


LIVE = evaluation("jmt-live", predictions({("fraud_suspicion", 0): "faq"}))


def test_an_equal_or_better_candidate_passes() -> None:
    assert gate(evaluation("jmt-same", LIVE.predictions), LIVE).passed
    better = gate(evaluation("jmt-better", predictions()), LIVE)
    assert better.passed and better.reasons == []
    assert any("fraud_suspicion recall 1.000 vs live 0.980" in c for c in better.checks)


def test_one_emergency_message_lost_is_refused_though_every_target_holds() -> None:
    candidate = evaluation(
        "jmt-cand",
        predictions({("fraud_suspicion", 0): "faq", ("emergency", 7): "other"}),
    )
    assert all(t["met"] for t in candidate.report["targets"].values())  # 0.98 ≥ 0.98
    assert candidate.macro_f1 > LIVE.macro_f1 - 0.005  # small enough on its own
    result = gate(candidate, LIVE)
    assert not result.passed
    assert result.reasons == ["emergency recall 0.980 vs live 1.000 (may never drop)"]


def test_a_fraud_recall_drop_is_refused() -> None:
    candidate = evaluation(
        "jmt-cand", predictions({("fraud_suspicion", 0): "faq", ("fraud_suspicion", 1): "other"})
    )
    result = gate(candidate, LIVE)
    assert not result.passed
    assert result.reasons == ["fraud_suspicion recall 0.960 vs live 0.980 (may never drop)"]


def test_a_macro_f1_drop_beyond_the_tolerance_is_refused() -> None:
    wrong = {("legal_help", i): "noise_complaint" for i in range(4)}
    candidate = evaluation("jmt-cand", predictions({("fraud_suspicion", 0): "faq", **wrong}))
    assert candidate.macro_f1 >= 0.92  # the absolute target still holds
    result = gate(candidate, LIVE)
    assert not result.passed
    assert len(result.reasons) == 1 and result.reasons[0].startswith("macro-F1 0.9")
    assert "may drop by at most 0.005" in result.reasons[0]


def test_a_missed_absolute_target_fails_even_without_a_live_model() -> None:
    wrong = {("fraud_suspicion", i): "faq" for i in range(5)}  # recall 0.90 < 0.95
    result = gate(evaluation("jmt-first", predictions(wrong)), None)
    assert not result.passed
    assert result.reasons == ["recall:fraud_suspicion 0.900 (target ≥ 0.95)"]


def test_the_report_lists_the_examples_that_got_worse_and_better() -> None:
    candidate = evaluation("jmt-cand", predictions({("emergency", 7): "other"}))
    worse, better = changed_examples(LIVE, candidate)
    assert [(w[0].predicted, w[1].text) for w in worse] == [("emergency", "emergency message 7")]
    assert [b[1].text for b in better] == ["fraud_suspicion message 0"]
    report = comparison_markdown(candidate, LIVE, gate(candidate, LIVE))
    assert "**Gate FAILED.**" in report
    assert "FAIL: emergency recall 0.980 vs live 1.000 (may never drop)" in report
    assert "## Worse: right in live, wrong in the candidate (1)" in report
    assert (
        "| emergency message 7 | emergency (emergency) | emergency (emergency, 0.90) "
        "| other (greet, 0.90) |" in report
    )
    assert "## Better: wrong in live, right in the candidate (1)" in report
    assert "![live](jmt-live/triage_confusion_matrix.png)" in report
    assert "![candidate](jmt-cand/triage_confusion_matrix.png)" in report
    assert "| emergency | 50 | 1.000 | 1.000 | ±0 | 1.000 | 0.980 | -0.020 |" in report


# --- LIVE / HISTORY ---


def fake_model(folder: Path, fingerprint: str, suffix: str = "") -> Path:
    model = folder / f"jmt-{fingerprint}{suffix}.tar.gz"
    model.write_bytes(f"model {fingerprint}{suffix}".encode())
    return model


def test_history_is_a_stack_promotions_push_rollbacks_pop(tmp_path: Path) -> None:
    a, b, c = (fake_model(tmp_path, h) for h in (HASH_A, HASH_B, HASH_C))
    models.record("promote", a, b, tmp_path)
    models.record("promote", b, c, tmp_path)
    assert models.read_live(tmp_path) == c
    assert models.rollback_target(tmp_path) == b
    models.record("rollback", c, b, tmp_path)
    assert models.read_live(tmp_path) == b
    assert models.rollback_target(tmp_path) == a
    lines = (tmp_path / "HISTORY").read_text().splitlines()
    assert [line.split("\t")[1:] for line in lines] == [
        ["promote", a.name, HASH_A, b.name, HASH_B],
        ["promote", b.name, HASH_B, c.name, HASH_C],
        ["rollback", c.name, HASH_C, b.name, HASH_B],
    ]
    assert (tmp_path / "LIVE").read_text() == b.name + "\n"


def test_models_outside_the_folder_are_recorded_by_absolute_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = fake_model(elsewhere, HASH_A, "-copy")
    folder = tmp_path / "models"
    folder.mkdir()
    models.write_live(outside, folder)
    assert models.read_live(folder) == outside
    assert models.model_hash(outside) == HASH_A


def test_without_live_the_newest_other_model_is_compared(tmp_path: Path) -> None:
    a, b, c = (fake_model(tmp_path, h) for h in (HASH_A, HASH_B, HASH_C))
    for age, model in enumerate((c, b, a)):
        os.utime(model, (1_000_000 + age, 1_000_000 + age))  # a is the newest
    assert models.default_live(a, tmp_path) == b
    models.write_live(c, tmp_path)
    assert models.default_live(a, tmp_path) == c


def test_model_list_shows_the_data_hash_training_time_and_which_is_live(tmp_path: Path) -> None:
    a, b = fake_model(tmp_path, HASH_A), fake_model(tmp_path, HASH_B)
    (tmp_path / f"jmt-{HASH_A}.json").write_text(
        json.dumps({"data_hash": HASH_A, "trained_at": "2026-11-28T10:00:00+0000",
                    "training_seconds": 80.5})
    )  # fmt: skip
    models.write_live(a, tmp_path)
    lines = models.describe_models(tmp_path)
    live_line = next(line for line in lines if a.name in line)
    assert live_line.startswith("* ") and HASH_A in live_line
    assert "2026-11-28T10:00:00+0000" in live_line and "80.5 s" in live_line
    assert live_line.endswith("LIVE")
    assert any(b.name in line and HASH_B in line and not line.startswith("*") for line in lines)


def test_a_gate_result_is_fresh_only_for_exactly_those_files(tmp_path: Path) -> None:
    a, b = fake_model(tmp_path, HASH_A), fake_model(tmp_path, HASH_B)
    heldout = tmp_path / "heldout.yml"
    heldout.write_text("nlu: []\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    models.write_gate(b, a, heldout, GateResult(True, [], ["pass: x"]), reports)
    assert models.fresh_gate(b, a, heldout, reports) == GateResult(True, [], ["pass: x"])
    assert models.fresh_gate(a, a, heldout, reports) is None  # another candidate
    assert models.fresh_gate(b, None, heldout, reports) is None  # another live model
    b.write_bytes(b"retrained")
    assert models.fresh_gate(b, a, heldout, reports) is None  # same name, other content


# --- promotion against a stand-in for Rasa's HTTP API ---


class StandIn(ThreadingHTTPServer):
    """GET /status and PUT /model as Rasa 3.6 answers them; records every request."""

    def __init__(self, serving: str) -> None:
        self.serving = serving
        self.requests: list[tuple[str, str, dict | None]] = []
        self.refuse = False
        super().__init__(("127.0.0.1", 0), StandInHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def loads(self) -> list[str]:
        return [body["model_file"] for method, _, body in self.requests if method == "PUT" and body]


class StandInHandler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(("GET", self.path, None))
        if self.path == "/status":
            self._reply(200, {"model_file": self.server.serving, "model_id": "x"})
        else:
            self._reply(404, {})

    def do_PUT(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("PUT", self.path, body))
        model = Path(body.get("model_file", ""))
        if self.path != "/model" or self.server.refuse or not model.is_file():
            self._reply(400, {"status": "failure", "reason": "BadRequest"})
            return
        self.server.serving = model.name
        self._reply(204)


@pytest.fixture
def rasa() -> Iterator[StandIn]:
    server = StandIn(serving=f"jmt-{HASH_A}.tar.gz")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "models"
    folder.mkdir()
    heldout = tmp_path / "heldout.yml"
    heldout.write_text("nlu: []\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    a = fake_model(folder, HASH_A)
    b = fake_model(folder, HASH_B)
    os.utime(a, (1_000_000, 1_000_000))  # b is the newest
    return {"models": folder, "heldout": heldout, "reports": reports, "a": a, "b": b}


def _no_gate_run(*args: object, **kwargs: object) -> GateResult:
    raise AssertionError("the gate must not run again: a fresh result exists")


def test_promote_refuses_a_failing_gate_without_touching_the_server(
    rasa: StandIn, project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = GateResult(False, ["emergency recall 0.980 vs live 1.000 (may never drop)"], [])
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: refused)
    with pytest.raises(models.PromotionError, match="emergency recall 0.980 vs live 1.000"):
        models.promote(
            rasa_url=rasa.url,
            put_model=True,
            model=project["b"],
            models_dir=project["models"],
            heldout=project["heldout"],
            reports_root=project["reports"],
        )
    assert rasa.requests == []
    assert not (project["models"] / "LIVE").exists()
    assert not (project["models"] / "HISTORY").exists()


def test_promote_refuses_on_a_fresh_failed_gate_result_without_rerunning(
    rasa: StandIn, project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = GateResult(False, ["macro-F1 0.950 vs live 0.963 (may drop by at most 0.005)"], [])
    models.write_gate(project["b"], project["a"], project["heldout"], failed, project["reports"])
    monkeypatch.setattr(models, "run_gate", _no_gate_run)
    with pytest.raises(models.PromotionError, match="macro-F1 0.950"):
        models.promote(
            rasa_url=rasa.url,
            put_model=True,
            model=project["b"],
            models_dir=project["models"],
            heldout=project["heldout"],
            reports_root=project["reports"],
        )
    assert rasa.requests == []


def test_the_cli_exits_1_and_says_why(
    rasa: StandIn,
    project: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused = GateResult(False, ["fraud_suspicion recall 0.943 vs live 0.957 (may never drop)"], [])
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: refused)
    monkeypatch.setattr(models, "fresh_gate", lambda *a, **k: None)
    argv = ["model", "promote", "--put-model", "--rasa-url", rasa.url, "--model", str(project["b"])]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 1
    assert "fraud_suspicion recall 0.943 vs live 0.957" in capsys.readouterr().err
    assert rasa.requests == []
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nlu", "evaluate", "--compare", "--candidate", str(project["b"])])
    assert exit_.value.code == 1
    assert "gate FAILED: fraud_suspicion recall" in capsys.readouterr().out


def test_promote_then_rollback(
    rasa: StandIn, project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, folder = project["a"], project["b"], project["models"]
    passed = GateResult(True, [], ["pass: everything"])
    models.write_gate(b, a, project["heldout"], passed, project["reports"])
    monkeypatch.setattr(models, "run_gate", _no_gate_run)
    live = models.promote(
        rasa_url=rasa.url,
        put_model=True,
        model=b,
        models_dir=folder,
        heldout=project["heldout"],
        reports_root=project["reports"],
    )
    assert live == b
    assert rasa.loads == [str(b.resolve())] and rasa.serving == b.name
    assert models.read_live(folder) == b
    history = (folder / "HISTORY").read_text().splitlines()
    assert [line.split("\t")[1:] for line in history] == [
        ["promote", a.name, HASH_A, b.name, HASH_B]
    ]

    assert models.rollback(rasa_url=rasa.url, put_model=True, models_dir=folder) == a
    assert rasa.loads == [str(b.resolve()), str(a.resolve())] and rasa.serving == a.name
    assert models.read_live(folder) == a
    assert (folder / "HISTORY").read_text().splitlines()[1].split("\t")[1:] == [
        "rollback",
        b.name,
        HASH_B,
        a.name,
        HASH_A,
    ]
    with pytest.raises(models.PromotionError, match="nothing to roll back to"):
        models.rollback(rasa_url=rasa.url, put_model=True, models_dir=folder)


def test_promoting_the_model_rasa_already_serves_only_records_it(
    rasa: StandIn, project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: GateResult(True, [], []))
    models.promote(
        rasa_url=rasa.url,
        put_model=True,
        model=project["a"],
        models_dir=project["models"],
        heldout=project["heldout"],
        reports_root=project["reports"],
    )
    assert rasa.loads == []  # no reload: conversations in memory are kept
    assert models.read_live(project["models"]) == project["a"]
    assert models.rollback_target(project["models"]) is None


def test_a_model_rasa_refuses_to_load_changes_nothing(
    rasa: StandIn, project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "run_gate", lambda *a, **k: GateResult(True, [], []))
    rasa.refuse = True
    with pytest.raises(models.PromotionError, match="HTTP 400"):
        models.promote(
            rasa_url=rasa.url,
            put_model=True,
            model=project["b"],
            models_dir=project["models"],
            heldout=project["heldout"],
            reports_root=project["reports"],
        )
    assert rasa.serving == project["a"].name
    assert not (project["models"] / "LIVE").exists()


def test_an_unreachable_server_is_reported(project: dict[str, Path]) -> None:
    models.write_live(project["a"], project["models"])
    models.record("promote", project["a"], project["b"], project["models"])
    with pytest.raises(models.PromotionError, match="did not answer GET /status"):
        models.rollback(rasa_url="http://127.0.0.1:9", put_model=True, models_dir=project["models"])
    assert models.read_live(project["models"]) == project["b"]
