"""One log format in every process (casework/logconfig.py): the gateway under a real
uvicorn with two workers, Rasa's CLI logging sequence with bot/logging.yml, LOG_LEVEL."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from casework import logconfig
from jmt import launch, paths

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+) "
    r"\[(?P<request_id>[^\]]+)\] (?P<message>.*)$"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (local)
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_uvicorn_workers_log_in_the_project_format_and_add_up_their_metrics(tmp_path: Path):
    """Two gateway workers as the launcher starts them (jmt.gateway_worker on one shared
    socket): uvicorn's own lines (startup, access log) and ours share the format; the access
    line of a request carries its id and no secret; /metrics adds up both workers
    (PROMETHEUS_MULTIPROC_DIR)."""
    port = _free_port()
    listener = launch.listen("127.0.0.1", port)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "JMT_ENV": "development",
        "JMT_VAR_DIR": str(tmp_path / "var"),
        "JMT_SIMULATOR": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'jmt.sqlite3'}",
        "RASA_URL": "http://127.0.0.1:9",  # nothing listens: the gateway stays up (degraded)
        "ACTION_SERVER_URL": "http://127.0.0.1:9",
        "WECHAT_APP_ID": "",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": str(paths.REPO_ROOT),
        "LOG_LEVEL": "INFO",
    }
    # Migrate once first: two workers migrating a fresh SQLite file at once race (the
    # launcher migrates before it starts the gateway, too).
    subprocess.run(
        [sys.executable, "-c", "from casework import db; db.migrate()"],
        env=env,
        cwd=paths.REPO_ROOT,
        check=True,
        timeout=120,
    )
    with open(log, "w") as output:
        workers = [
            subprocess.Popen(
                launch.gateway_worker(listener),
                env=env,
                cwd=paths.REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
            for _ in range(2)
        ]
    listener.close()  # the workers hold it now
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert all(w.poll() is None for w in workers), log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        for n in range(20):
            status, headers, _ = _get(
                f"{base}/healthz?signature=s3cret&n={n}", {"X-Request-ID": f"probe-{n:04d}"}
            )
            assert (status, headers["x-request-id"]) == (200, f"probe-{n:04d}")
        # Both workers must have served something: on a loaded machine one worker can
        # accept every connection for a while, so keep asking until the other has too.
        extra = 0
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert time.monotonic() < deadline, "only one worker answered"
            assert _get(f"{base}/healthz")[0] == 200
            extra += 1
        # A worker counts a request once it has answered it: scrape until all are in.
        counted = 0.0
        while counted < 21 + extra:  # the probes and the readiness poll, whichever worker
            assert time.monotonic() < deadline, f"/metrics counts {counted} of {21 + extra}"
            status, _, body = _get(f"{base}/metrics")
            assert status == 200
            counted = sum(
                sample.value
                for family in text_string_to_metric_families(body)
                for sample in family.samples
                if sample.name == "jmt_http_requests_total" and sample.labels["route"] == "/healthz"
            )
        assert len({path.name for path in metrics_dir.glob("counter_*.db")}) == 2
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait(timeout=30)
    text = log.read_text()
    lines = text.splitlines()
    parsed = [LINE.match(line) for line in lines]
    unformatted = [line for line, match in zip(lines, parsed, strict=True) if not match]
    assert not unformatted, unformatted  # every line, uvicorn's included
    loggers = {match["logger"] for match in parsed if match}
    assert {"uvicorn.error", "uvicorn.access", "alembic.runtime.migration"} & loggers
    access = [m for m in parsed if m and m["logger"] == "uvicorn.access"]
    assert any(m["request_id"] == "probe-0007" and "/healthz?" in m["message"] for m in access)
    assert "s3cret" not in text  # the signature is redacted in the access log
    assert any(
        m["logger"] == "uvicorn.error" and "Started server process" in m["message"]
        for m in parsed
        if m
    )


RASA_SEQUENCE = """
import logging
import rasa.utils.common, rasa.utils.io
# What `rasa run --logging-config-file bot/logging.yml` does (rasa/__main__.py, Rasa 3.6):
rasa.utils.common.configure_logging_and_warnings(None, "bot/logging.yml", True, True)
rasa.utils.io.configure_colored_logging(None)
logging.getLogger("rasa.core.processor").info("user said 我的手机13812345678 ?token=abc")
logging.getLogger("rasa.core.processor").debug("below LOG_LEVEL")
"""


def test_rasa_logs_in_the_project_format_once_per_record_and_scrubbed():
    env = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT), "LOG_LEVEL": "INFO"}
    done = subprocess.run(
        [sys.executable, "-c", RASA_SEQUENCE],
        env=env,
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    mine = [line for line in done.stderr.splitlines() if "rasa.core.processor" in line]
    assert len(mine) == 1, done.stderr[-2000:]  # coloredlogs' handler prints nothing more
    match = LINE.match(mine[0])
    assert match and (match["level"], match["request_id"]) == ("INFO", "-")
    assert match["message"] == "user said 我的手机138****5678 ?token=***"


def test_log_level_is_validated_and_applied(capsys):
    with pytest.raises(ValueError, match="LOG_LEVEL='LOUD' is unknown"):
        logconfig.log_level("loud")
    logconfig.configure("WARNING")
    try:
        logger = logging.getLogger("tests.logconfig")
        logger.info("not shown")
        logger.warning("shown")
        err = capsys.readouterr().err
        assert "not shown" not in err and "WARNING tests.logconfig [-] shown" in err
    finally:
        logconfig.configure("INFO")


@pytest.mark.parametrize(
    "header, kept",
    [
        ("wx-req-0001", True),
        ("0123456789abcdef0123456789abcdef", True),
        ("short", False),
        ("bad id\nforged line", False),
        ("x" * 65, False),
        (None, False),
    ],
)
def test_request_ids_are_taken_only_when_well_formed(header, kept):
    given = logconfig.request_id_from(header)
    assert (given == header) is kept
    assert logconfig.WELL_FORMED.fullmatch(given)
