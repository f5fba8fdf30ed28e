"""NLU parse latency and throughput through Rasa's HTTP API, plus training time.

Starts `rasa run --enable-api` on the current model (port BENCH_RASA_PORT, default 5095),
sends held-out messages to POST /model/parse one at a time (latency p50/p95/p99) and then
from several concurrent clients (messages per second), prints the numbers and stops the
server. It also prints the Rasa process's memory (resident now, and its peak) as the
kernel reports it, and the training time read from the model's metadata (written by
`make train`); `--train` retrains first to measure it afresh. Issue 9's targets on this
2-core machine: parse p95 ≤ 30 ms, Rasa's memory ≤ 1.2 GB, training ≤ 5 minutes.

Usage: .venv/bin/python bench/nlu_latency.py [--requests 500] [--concurrency 4] [--train]
       [--model bot/models/jmt-….tar.gz]   # another model than the current one
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jmt import launch, paths  # noqa: E402
from jmt.train import metadata_path, train  # noqa: E402


def heldout_texts() -> list[str]:
    data = yaml.safe_load(paths.HELDOUT.read_text(encoding="utf-8"))
    texts = []
    for block in data["nlu"]:
        texts += [
            line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")
        ]
    return texts


def parse(url: str, text: str) -> float:
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (localhost)
        response.read()
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process in MB, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--train", action="store_true", help="retrain to measure training time")
    parser.add_argument("--model", type=Path, help="a trained model file (default: train/current)")
    args = parser.parse_args()

    model = args.model or train(force=args.train)
    port = int(os.environ.get("BENCH_RASA_PORT", "5095"))
    token = secrets.token_urlsafe(16)  # Rasa's API takes `?token=`, as in `make run`
    server = subprocess.Popen(
        launch.rasa_server(port, model=model),
        cwd=REPO,
        env={
            **os.environ,
            **launch.rasa_environment(token),  # Rasa's API token, off its command line
            # bot/endpoints.yml's variables; /model/parse touches neither the action
            # server nor the tracker store
            "ACTION_ENDPOINT_URL": "http://127.0.0.1:9/webhook",
            "ACTIONS_TOKEN": "unused",
            "RASA_TRACKER_DB": str(Path(tempfile.mkdtemp(prefix="jmt-bench-")) / "t.sqlite3"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/model/parse?token={token}"
    try:
        deadline = time.monotonic() + 600  # a busy machine loads TensorFlow slowly
        while True:
            try:
                parse(url, "你好")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("Rasa did not start") from None
                time.sleep(1)
        texts = heldout_texts()
        batch = [texts[i % len(texts)] for i in range(args.requests)]
        for text in texts[:20]:  # warm-up
            parse(url, text)
        latencies = [parse(url, text) for text in batch]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda t: parse(url, t), batch))
        throughput = len(batch) / (time.perf_counter() - started)
        resident, peak = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    meta = json.loads(metadata_path(model).read_text()) if metadata_path(model).exists() else {}
    print(f"model                 {model.name}")
    concurrent = f"{len(batch)} at concurrency {args.concurrency}"
    print(f"requests              {len(latencies)} sequential, {concurrent}")
    print(f"parse latency p50     {statistics.median(latencies):.1f} ms")
    print(f"parse latency p95     {percentile(latencies, 95):.1f} ms   (target ≤ 30 ms)")
    print(f"parse latency p99     {percentile(latencies, 99):.1f} ms")
    print(f"throughput            {throughput:.1f} messages/s")
    print(
        f"Rasa memory           {resident:.0f} MB resident, {peak:.0f} MB peak (target ≤ 1200 MB)"
    )
    print(f"training time         {meta.get('training_seconds', 'unknown')} s")


if __name__ == "__main__":
    main()
