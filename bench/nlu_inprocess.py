"""Triage scores, parse latency and memory of one trained NLU model, in process.

Loads the model with Rasa's Agent and parses every message of tests/nlu/heldout.yml and
tests/nlu/blind.yml one at a time, as the running bot would — with FallbackClassifier's
`nlu_fallback` applied (`rasa test nlu` undoes it, so its reports cannot show what an
out-of-scope message really gets). Prints per set: macro-F1 over the seven categories,
emergency and fraud recall, the share of out_of_scope messages answered with an FAQ and
the share sent to the fallback; then parse p50/p95 and the process's peak memory —
issue 9's targets (p95 ≤ 30 ms, memory ≤ 1.2 GB).

Usage: .venv/bin/python bench/nlu_inprocess.py bot/models/<model>.tar.gz
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.nlu_candidates import register_candidates  # noqa: E402
from bench.nlu_latency import percentile  # noqa: E402
from bench.nlu_pipelines import BLIND, examples, scores  # noqa: E402
from casework.triage import category_of  # noqa: E402
from jmt import paths  # noqa: E402


async def measure(model: Path) -> None:
    from rasa.core.agent import Agent

    started = time.perf_counter()
    agent = Agent.load(str(model))
    load_seconds = time.perf_counter() - started
    latencies: list[float] = []
    for name, path in (("heldout", paths.HELDOUT), ("blind", BLIND)):
        rows = examples(path)
        for text, _ in rows[:10]:  # warm-up
            await agent.parse_message(text)
        predicted = []
        for text, _ in rows:
            begun = time.perf_counter()
            parsed = await agent.parse_message(text)
            latencies.append((time.perf_counter() - begun) * 1000)
            predicted.append(str((parsed.get("intent") or {}).get("name")))
        intents = [intent for _, intent in rows]
        s = scores([category_of(i) for i in intents], [category_of(p) for p in predicted])
        oos = [p for i, p in zip(intents, predicted, strict=True) if i == "out_of_scope"]
        to_faq = sum(category_of(p) == "faq" for p in oos) / max(1, len(oos))
        fallback = sum(p == "nlu_fallback" for p in predicted) / len(predicted)
        print(
            f"{name:8s} n={len(rows)} macro-F1 {s['macro_f1']:.3f}  emergency recall "
            f"{s['emergency']:.3f}  fraud recall {s['fraud']:.3f}  out_of_scope→FAQ "
            f"{to_faq:.3f} (of {len(oos)})  fallback {fallback:.3f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model              {model.name}")
    print(f"load               {load_seconds:.1f} s")
    print(f"parse p50          {statistics.median(latencies):.1f} ms")
    print(f"parse p95          {percentile(latencies, 95):.1f} ms   (target ≤ 30 ms)")
    print(f"peak memory (RSS)  {peak_mb:.0f} MB   (target ≤ 1200 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    register_candidates()  # a model trained with a candidate encoder (docs/nlu.md) loads too
    logging.getLogger("rasa").setLevel(logging.WARNING)
    asyncio.run(measure(args.model))


if __name__ == "__main__":
    main()
