"""A bench script runs with `bench/` first on sys.path, so a file there named like a
standard-library module replaces it for every bench (bench/queue.py once broke them all:
jsonpickle, imported by Rasa, found no `queue.Queue`)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_no_bench_file_shadows_a_standard_library_module():
    names = {path.stem for path in BENCH.glob("*.py")} | {
        path.name for path in BENCH.iterdir() if path.is_dir() and path.name != "__pycache__"
    }
    assert sorted(names & set(sys.stdlib_module_names)) == []
