"""Replies while a model is promoted: the launcher's process swap against Rasa's PUT /model.

Starts the real launcher (`python -m jmt.launch`, SQLite in a temporary folder), keeps
residents writing to Rasa's REST channel (each message to the URL rasa-urls.json names
at that moment, as the gateway's pool does), and prints reply latency p50/p95/p99, the
slowest reply, the longest gap between two answered messages and the failures, for:

1. a quiet period (nothing changes),
2. `jmt model promote` through the launcher (a new Rasa process, switch, drain),
3. `PUT /model` on the serving process (the old path, `--put-model`), unless --no-put.

Target for 2: p99 under 1 s and no failure. Uses the model for the current data (a copy
of it is promoted); `make train` first.

Usage: .venv/bin/python bench/promotion.py [--residents 4] [--quiet 30] [--no-put]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jmt import model as models  # noqa: E402
from jmt import paths  # noqa: E402
from jmt.evaluate import GateResult  # noqa: E402
from tests.e2e.launcher import rasa_urls, running_launcher  # noqa: E402

TEXTS = ["身份证丢了怎么补办", "你好", "居住证怎么办理", "谢谢"]


class Residents:
    """`count` residents writing in turn, each waiting for the answer before the next."""

    def __init__(self, var: Path, count: int) -> None:
        self.var = var
        self.count = count
        self.samples: list[tuple[float, float]] = []  # (answered at, latency)
        self.failures: list[tuple[float, str]] = []  # (when, what)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _write(self, n: int) -> None:
        turn = 0
        while not self._stop.is_set():
            urls = rasa_urls(self.var)["urls"]
            url = urls[turn % len(urls)]
            body = json.dumps({"sender": f"bench-{n}", "message": TEXTS[turn % len(TEXTS)]})
            request = urllib.request.Request(
                f"{url}/webhooks/rest/webhook", body.encode(), {"Content-Type": "application/json"}
            )
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=120) as reply:
                    reply.read()
                self.samples.append((time.monotonic(), time.monotonic() - started))
            except OSError as error:
                self.failures.append((time.monotonic(), type(error).__name__))
            turn += 1
            time.sleep(0.1)

    def report(self, name: str, start: float, end: float) -> None:
        samples = [s for s in self.samples if start <= s[0] <= end]
        failed = [what for when, what in self.failures if start <= when <= end]
        summary(name, samples, start, end)
        print(f"{'':<28} failures: {len(failed)} {sorted(set(failed))}")


def summary(name: str, samples: list[tuple[float, float]], start: float, end: float) -> None:
    latencies = sorted(latency for _, latency in samples)
    if not latencies:
        print(f"{name:<28} no answer at all in {end - start:.0f} s")
        return
    times = [start] + sorted(at for at, _ in samples) + [end]
    gap = max(b - a for a, b in zip(times, times[1:], strict=False))

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        f"{name:<28} n={len(latencies):<5} p50={statistics.median(latencies) * 1000:7.0f} ms "
        f"p95={pct(0.95) * 1000:7.0f} ms p99={pct(0.99) * 1000:7.0f} ms "
        f"max={latencies[-1] * 1000:7.0f} ms  longest gap={gap:5.1f} s  ({end - start:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--residents", type=int, default=4)
    parser.add_argument("--quiet", type=float, default=30.0, help="seconds of quiet baseline")
    parser.add_argument("--no-put", action="store_true", help="skip the PUT /model run")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        running_launcher(Path(folder), RASA_DRAIN_SECONDS="5") as bot,
    ):
        tmp = Path(folder)
        var, token = bot["var"], bot["token"]
        [url] = rasa_urls(var)["urls"]
        with urllib.request.urlopen(f"{url}/status?token={token}", timeout=30) as reply:
            current = paths.MODELS / json.loads(reply.read())["model_file"]
        models_dir = tmp / "models"
        models_dir.mkdir()
        copy = models_dir / f"{current.name.removesuffix('.tar.gz')}-copy.tar.gz"
        shutil.copyfile(current, copy)
        models.write_live(current, models_dir)
        models.run_gate = lambda *a, **k: GateResult(True, [], [])  # type: ignore[assignment]

        residents = Residents(var, args.residents)
        residents.start()
        time.sleep(5)  # warm
        start = time.monotonic()
        time.sleep(args.quiet)
        quiet_end = time.monotonic()
        models.promote(model=copy, var_dir=var, models_dir=models_dir, reports_root=tmp)
        promoted = time.monotonic()
        put_end = promoted
        if not args.no_put:
            time.sleep(5)
            put_start = time.monotonic()
            [live] = rasa_urls(var)["urls"]
            api = models.RasaModelAPI(live, token=token)
            api.load(current)  # the old path, on the serving process
            put_end = time.monotonic()
        residents.stop()
        print(f"\nRasa replicas: 1, residents writing: {args.residents}")
        residents.report("quiet", start, quiet_end)
        residents.report("launcher promotion", quiet_end, promoted)
        if not args.no_put:
            residents.report("PUT /model", put_start, put_end)


if __name__ == "__main__":
    main()
