"""Train a model unless one already matches the data and config (`make train`).

Models are named `jmt-<hash>.tar.gz`, the hash covering every file training reads, so a
model is retrained exactly when something it learned from changed, and `rasa run --model
bot/models` (which serves the newest file) picks it up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from jmt import paths

logger = logging.getLogger(__name__)


def training_inputs() -> list[Path]:
    files = [paths.CONFIG, *sorted(paths.DOMAIN.rglob("*.yml"))]
    for folder in [*paths.TRAINING_DATA, paths.JIEBA_DICT]:
        files += sorted(p for p in folder.rglob("*") if p.is_file())
    files += sorted(paths.NLU_COMPONENTS.rglob("*.py"))
    return files


def data_hash() -> str:
    """A hash of every training input's path and content (12 hex digits)."""
    digest = hashlib.sha256()
    for path in training_inputs():
        digest.update(str(path.relative_to(paths.REPO_ROOT)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def model_path(fingerprint: str) -> Path:
    return paths.MODELS / f"jmt-{fingerprint}.tar.gz"


def rasa_bin() -> str:
    return str(Path(sys.executable).with_name("rasa"))


def train(*, force: bool = False) -> Path:
    fingerprint = data_hash()
    target = model_path(fingerprint)
    if target.exists() and not force:
        os.utime(target)  # make it the newest, so Rasa serves it
        logger.info("model %s matches the data and config; not retraining", target.name)
        return target
    paths.MODELS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = [
        rasa_bin(),
        "train",
        "--config",
        str(paths.CONFIG),
        "--domain",
        str(paths.DOMAIN),
        "--data",
        *map(str, paths.TRAINING_DATA),
        "--out",
        str(paths.MODELS),
        "--fixed-model-name",
        target.name.removesuffix(".tar.gz"),
    ]
    logger.info("training %s ...", target.name)
    subprocess.run(command, check=True, cwd=paths.REPO_ROOT)
    seconds = time.monotonic() - started
    # Beside the model: what it was trained on and how long it took (read by bench/).
    metadata = {
        "model": target.name,
        "data_hash": fingerprint,
        "training_seconds": round(seconds, 1),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    metadata_path(target).write_text(json.dumps(metadata, indent=2))
    logger.info("trained %s in %.0f s", target.name, seconds)
    return target


def metadata_path(model: Path) -> Path:
    return model.with_name(model.name.removesuffix(".tar.gz") + ".json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="train even if a model matches")
    parser.add_argument("--print-hash", action="store_true", help="print the data hash and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.print_hash:
        sys.stdout.write(data_hash() + "\n")
        return
    train(force=args.force)


if __name__ == "__main__":
    main()
