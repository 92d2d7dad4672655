"""benchmarks/quality.py and benchmarks/baselines.py: the metric functions on hand-computed
cases, the soft-label logistic regression, the paired cluster bootstrap, and a smoke run of
the whole benchmark on a tiny synthetic data dir written here in each dataset's own format."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from conftest import load_benchmark
from qualaudit.metrics import auroc as reference_auroc
from qualaudit.metrics import bootstrap_ci
from qualaudit.training.datasets import Example, by_split, load_sources, split_of, transcript
from qualaudit.training.train import taught

quality = load_benchmark("quality")
teachers = load_benchmark("teachers")
baselines = quality.baselines


# ------------------------------------------------------------------------------ metrics
def test_nmd_and_rsnod_on_hand_computed_cases():
    opposite = np.array([[1.0, 0, 0, 0, 0]]), np.array([[0, 0, 0, 0, 1.0]])
    assert quality.nmd(*opposite) == pytest.approx([1.0])
    # DW_i = |i - 0| + |i - 4| = 4 everywhere: OD both ways 4, sqrt(4 / 4) = 1
    assert quality.rsnod(*opposite) == pytest.approx([1.0])
    near = np.array([[0.5, 0.5, 0, 0, 0]]), np.array([[0, 1.0, 0, 0, 0]])
    # cumulative [.5, 1, 1, 1, 1] vs [0, 1, 1, 1, 1]: 0.5 / 4
    assert quality.nmd(*near) == pytest.approx([0.125])
    # (p - q)^2 = [.25, .25, 0, 0, 0]; DW_0 = DW_1 = .25; OD(p||q) = OD(q||p) = .25
    assert quality.rsnod(*near) == pytest.approx([0.25])


def test_nmd_and_rsnod_properties():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), 50), rng.dirichlet(np.ones(5), 50)
    for measure in (quality.nmd, quality.rsnod):
        assert np.allclose(measure(p, p), 0)
        assert np.allclose(measure(p, q), measure(q, p))
        assert np.all((measure(p, q) >= 0) & (measure(p, q) <= 1))
    # order-aware: mass one level off is closer than mass four levels off
    truth = np.array([[0, 0, 1.0, 0, 0]] * 2)
    pred = np.array([[0, 1.0, 0, 0, 0], [1.0, 0, 0, 0, 0]])
    for measure in (quality.nmd, quality.rsnod):
        near, far = measure(pred, truth)
        assert near < far
    # unnormalised inputs are normalised first, as in the official script
    assert quality.nmd(2 * p, q) == pytest.approx(quality.nmd(p, q))


def test_classification_metrics_match_references():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # rounded: ties
    assert quality.auroc(scores, labels) == pytest.approx(reference_auroc(scores, labels))
    assert np.isnan(quality.auroc(scores, np.zeros(200)))
    predicted = scores >= 0.6
    assert quality.binary_f1(predicted, labels) == pytest.approx(f1_score(labels, predicted))
    assert quality.uar(predicted, labels) == pytest.approx(balanced_accuracy_score(labels, predicted))
    classes, guesses = rng.integers(0, 3, 100), rng.integers(0, 2, 100)  # class 2 never guessed
    assert quality.macro_f1(guesses, classes) == pytest.approx(f1_score(classes, guesses, average="macro"))
    assert quality.spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
    assert np.isnan(quality.spearman([1, 2, 3], [5, 5, 5]))


# ------------------------------------------------------------------------------ baselines
def test_soft_label_lr_equals_replicated_hard_labels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    share = rng.integers(0, 11, 40) / 10  # annotator shares in tenths
    soft = baselines.SoftLabelLR(C=1.0).fit(X, np.stack([1 - share, share], 1))
    # the same data as ten hard-labelled copies per row, a share of them positive
    hard_X = np.repeat(X, 10, axis=0)
    hard_y = np.concatenate([[1] * round(10 * s) + [0] * (10 - round(10 * s)) for s in share])
    from sklearn.linear_model import LogisticRegression

    # ten copies weigh the data ten times: C / 10 keeps the same penalty ratio
    hard = LogisticRegression(C=0.1, max_iter=2000).fit(hard_X, hard_y)
    assert np.allclose(soft.predict_proba(X)[:, 1], hard.predict_proba(X)[:, 1], atol=1e-3)


def test_soft_label_lr_intercept_only_recovers_the_mean_distribution():
    rng = np.random.default_rng(3)
    targets = rng.dirichlet(np.ones(5), 200)
    targets[:, 4] = 0  # a class nobody chose
    targets /= targets.sum(1, keepdims=True)
    X = rng.normal(size=(200, 2))
    probs = baselines.SoftLabelLR(C=1e-6).fit(X, targets).predict_proba(X)
    assert probs.shape == (200, 5)
    assert np.allclose(probs[:, 4], 0)
    assert np.allclose(probs.mean(0), targets.mean(0), atol=1e-3)
    one_class = baselines.SoftLabelLR().fit(X[:3], np.array([[1.0, 0]] * 3))
    assert np.allclose(one_class.predict_proba(X[:2]), [[1, 0], [1, 0]])


def test_choose_c_picks_from_the_grid_with_grouped_folds():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(float)
    targets = np.stack([1 - y, y], 1)
    assert baselines.choose_C(X, targets, np.arange(60) // 2) in baselines.C_GRID
    assert baselines.choose_C(X, targets, np.zeros(60)) == 1.0  # one group: nothing to fold


def test_length_grouped_batches_see_every_example_once_in_similar_lengths():
    rng = random.Random(0)
    lengths = [rng.randrange(5, 256) for _ in range(1000)]
    order = list(range(1000))
    rng.shuffle(order)
    batches = baselines._length_grouped(order, lengths, 16, random.Random(1), window=10)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 16 for b in batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = sum(len(b) * max(lengths[i] for i in b) for b in
                (order[k:k + 16] for k in range(0, 1000, 16)))
    assert padded < 0.7 * plain


def test_single_task_eval_probabilities_follow_the_input_order(tiny_encoder_dir):
    texts = ["hi", "my order never arrived and nobody answers", "ok", "refund please now"]
    targets = np.array([[1.0, 0], [0, 1.0]])
    forward = baselines.fine_tune_single_task(texts[:2], targets, texts, tiny_encoder_dir, epochs=0)
    backward = baselines.fine_tune_single_task(texts[:2], targets, texts[::-1], tiny_encoder_dir,
                                               epochs=0)
    assert forward.shape == (4, 2) and np.allclose(forward.sum(1), 1)
    assert np.allclose(forward, backward[::-1], atol=1e-6)
    assert not np.allclose(forward[0], forward[1])


# ------------------------------------------------------------------------------ bootstrap
def test_cluster_bootstrap_with_singleton_groups_draws_like_bootstrap_ci():
    rng = np.random.default_rng(5)
    scores, labels = rng.random(80), rng.integers(0, 2, 80)
    boot = quality.cluster_bootstrap(lambda i: quality.auroc(scores[i], labels[i]),
                                     np.arange(80), n_resamples=200, seed=7)
    expected = bootstrap_ci((scores, labels), quality.auroc, n_resamples=200, seed=7)
    assert quality.percentile_ci(boot) == pytest.approx(list(expected))


def test_cluster_bootstrap_keeps_groups_whole_and_pairs_the_systems():
    groups = np.array([3, 3, 3, 1, 1, 7, 2, 2, 2, 2])
    seen = []

    def statistic(index):
        drawn = groups[index]
        for g in np.unique(drawn):  # every drawn group brings all its units, a whole number of times
            assert np.sum(drawn == g) % np.sum(groups == g) == 0
        seen.append(len(index))
        return [len(index), 1.0]

    boot = quality.cluster_bootstrap(statistic, groups, n_resamples=50, seed=0)
    assert boot.shape == (50, 2) and len(set(seen)) > 1
    # paired: a system that is better on every unit by 0.1 has a difference of exactly 0.1
    rng = np.random.default_rng(6)
    base = rng.random(10)
    boot = quality.cluster_bootstrap(lambda i: [base[i].mean() + 0.1, base[i].mean()], groups, 100)
    assert quality.percentile_ci(boot[:, 0] - boot[:, 1]) == pytest.approx([0.1, 0.1])


# ------------------------------------------------------------------------------ smoke run
WORDS = ("my order card charged twice refund please help sorry still not working password "
         "reset link account locked thanks fixed great human agent manager wait email").split()


def _sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _ids(source: str, make, per_split: dict[str, int]) -> list[str]:
    """Group ids `make(k)` whose fixed split gives `per_split` of each split (splits are a
    hash of the group, so the ids are chosen here)."""
    wanted, chosen, k = dict(per_split), [], 0
    while any(wanted.values()):
        candidate = make(k)
        split = split_of(source, candidate)
        if wanted.get(split, 0):
            wanted[split] -= 1
            chosen.append(candidate)
        k += 1
    return chosen


def write_tiny_data(root: Path, seed: int = 0, per_split: dict[str, int] | None = None,
                    uss_files: tuple[str, ...] = ("MWOZ",)) -> Path:
    """A few examples of each dataset in its original file format, with `per_split` examples
    of each split (default train and report) for each source, and USS in `uss_files`."""
    rng = random.Random(seed)
    per_split = per_split or {"train": 8, "report": 4}
    (root / "stc3_dch").mkdir(parents=True)
    dialogues = []
    for k, did in enumerate(_ids("stc3", lambda k: f"d{k}", per_split)):
        senders = ["customer", "helpdesk", "customer", "helpdesk"][: 2 + k % 3]
        good = k % 2 == 0
        notes = [{"quality": {"A": rng.choice([1, 2] if good else [-2, -1, 0]),
                              "S": rng.choice([0, 1] if good else [-2, -1]), "E": 0},
                  "nugget": [("CNUG0" if i == 0 else rng.choice(["CNUG", "CNUG*"])) if s == "customer"
                             else rng.choice(["HNUG", "HNUG*", "HNaN"]) for i, s in enumerate(senders)]}
                 for _ in range(5)]
        dialogues.append({"id": did, "turns": [{"sender": s, "utterances": [_sentence(rng)]}
                                               for s in senders], "annotations": notes})
    (root / "stc3_dch" / "train_data_en.json").write_text(json.dumps(dialogues), encoding="utf-8")

    (root / "uss").mkdir()
    for corpus in uss_files:
        blocks = []
        wanted = _ids("uss", lambda k, c=corpus: f"{c}-{k}", per_split)  # dialogue k of the file
        for _ in range(max(int(i.split("-")[1]) for i in wanted) + 1):
            lines = []
            for _ in range(2):
                lines += [f"USER\t{_sentence(rng)}\tinform\t{rng.choice(['3,3,3', '2,1,2', '3,2,3'])}",
                          f"SYSTEM\t{_sentence(rng)}\trequest\t"]
            lines.append(f"USER\tOVERALL\t\t{rng.choice(['3,3,2', '4,4,3', '2,1,2'])}")
            blocks.append("\n".join(lines))
        (root / "uss" / f"{corpus}.txt").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")

    (root / "epitome").mkdir()
    pairs = [(*key.split("/"), _sentence(rng, 10), _sentence(rng, 10))
             for key in _ids("epitome", lambda k: f"sp{k}/rp{k}", per_split)]
    for name in ("emotional-reactions-reddit.csv", "interpretations-reddit.csv",
                 "explorations-reddit.csv"):
        with (root / "epitome" / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"])
            for k, (sp, rp, seeker, response) in enumerate(pairs):
                writer.writerow([sp, rp, seeker, response, k % 3, ""])

    (root / "bitext").mkdir()
    intents = ["contact_human_agent", "complaint", "track_order", "contact_customer_service",
               "get_refund"]
    with (root / "bitext" / "Bitext_Sample_Customer_Support_Training_Dataset_0.csv").open(
            "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction", "intent", "category", "response"])
        for k in range(60):
            writer.writerow([f"{_sentence(rng)} {k}", intents[k % len(intents)], "X", "ok"])

    dbdc3_split = {split: n - n // 4 for split, n in per_split.items()}
    for k, did in enumerate(_ids("dbdc3", lambda k: f"dlg{k}", dbdc3_split)):
        folder = root / "dbdc3" / "dev" / f"BOT_{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        turns = []
        for i in range(6):
            speaker = "S" if i % 2 == 0 else "U"
            notes = [] if speaker == "U" or i == 0 else [
                {"breakdown": rng.choice("OOTXX")} for _ in range(10)]
            turns.append({"turn-index": i, "speaker": speaker, "utterance": _sentence(rng),
                          "annotations": notes})
        (folder / f"{did}.log.json").write_text(json.dumps({"dialogue-id": did, "turns": turns}),
                                                encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("tiny-data"))


def test_tiny_data_has_train_and_report_examples_of_every_source(tiny_data_dir):
    sources = load_sources(tiny_data_dir)
    assert set(sources) == {"stc3", "uss", "epitome", "bitext", "dbdc3"}
    for name, examples in sources.items():
        splits = {e.split for e in examples}
        assert {"train", "report"} <= splits, name


def test_smoke_run_of_the_whole_benchmark(tiny_data_dir, tiny_model_dir, tiny_encoder_dir, tmp_path):
    json_path, markdown_path = tmp_path / "quality.json", tmp_path / "quality.md"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quality.main(["--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                      "--encoder", tiny_encoder_dir, "--n-resamples", "30", "--relabel-sample", "8",
                      "--c-grid", "0.1,10",
                      "--single-task-resolution", "--single-task-epochs", "1",
                      "--json", str(json_path), "--markdown", str(markdown_path)])
    results = json.loads(json_path.read_text(encoding="utf-8"))
    assert results["split"] == "report" and results["model"]["trained"] is False
    assert set(results["transcripts"]) == {"stc3", "uss", "epitome", "bitext", "dbdc3"}
    metrics = results["metrics"]
    for key in ("stc3/A/nmd", "stc3/A/rsnod", "stc3/A/auroc", "stc3/S/spearman",
                "stc3/solution_given/f1", "stc3/solution_confirmed/f1", "uss/dissatisfied/auroc",
                "uss/dissatisfied/uar", "epitome/explorations/macro_f1", "bitext/escalation/f1",
                "bitext/asks_for_human/auroc", "dbdc3/breakdown/auroc"):
        assert key in metrics, key
    main_rows = [m for m in metrics.values() if m["main"]]
    assert main_rows and all("tfidf" in m and "minilm_probe" in m for m in main_rows)
    nmd = metrics["stc3/A/nmd"]
    assert 0 <= nmd["model"] <= 1 and nmd["model_ci"][0] <= nmd["model"] <= nmd["model_ci"][1]
    assert nmd["diff_tfidf"] == pytest.approx(nmd["model"] - nmd["tfidf"])
    assert "single_task" in nmd and "single_task" not in metrics["stc3/S/nmd"]
    # bitext: contact_customer_service is left out of the escalation target
    report = [e for e in load_sources(tiny_data_dir, ["bitext"])["bitext"] if e.split == "report"]
    assert metrics["bitext/escalation/f1"]["n"] == sum(
        e.info["intent"] != "contact_customer_service" for e in report)
    assert results["ece"]["escalation"]["targets"].keys() >= {"stc3/escalation", "bitext/escalation"}
    assert results["bias"]["agent_type_relabel"] == {
        "transcripts": 8, "max_abs_diff": 0.0, "other_mismatches": 0, "identical": True}
    assert "stc3/resolution" in results["bias"]["length_spearman"]
    assert {c["status"].split(" (")[0] for c in results["checks"]} <= {
        "pass", "fail", "baseline at ceiling", "undetermined"}
    assert results["timings"]["total_s"] > 0 and results["baseline_C"]["minilm_probe"]
    markdown = markdown_path.read_text(encoding="utf-8")
    for source in ("stc3", "uss", "epitome", "bitext", "dbdc3"):
        assert f"### {source} (" in markdown
    assert "single-task FT" in markdown and "MiniLM probe" in markdown


def test_split_all_on_the_same_dir_skips_the_baselines(tiny_data_dir, tiny_model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = quality.run_benchmark(tiny_model_dir, tiny_data_dir, "all", sources=["dbdc3"],
                                        n_resamples=10, relabel_sample=2)
    assert results["transcripts"] == {"dbdc3": 9}  # every example, whatever its split
    assert all("tfidf" not in m for m in results["metrics"].values())
    assert any("--train-data-dir" in note for note in results["notes"])
    json.dumps(quality._json_ready(results), allow_nan=False)


# ------------------------------------------------------------------------------ protocol
def _example(source: str, group: str, info: dict | None = None, labels: dict | None = None):
    t = transcript(group, [("customer", "my card was charged twice"), ("agent", "refund sent")])
    return Example(t, source, group, labels=labels or {}, info=info or {})


def _group_in(source: str, split: str, prefix: str) -> str:
    return next(g for k in range(1000) if split_of(source, g := f"{prefix}-{k}") == split)


def test_protocol_pairs_keep_selection_and_report_splits_apart():
    names = [p.name for p in quality.PAIRS]
    assert len(names) == len(set(names))
    roles = {p.role: set() for p in quality.PAIRS}
    for p in quality.PAIRS:
        roles[p.role].add(p.split)
        assert p.target in quality.MAIN_TARGETS and p.metric in ("auroc", "spearman")
    assert roles == {"selection": {"dev"}, "report": {"report"}}
    selected = {p.target for p in quality.PAIRS if p.role == "selection"}
    assert selected == set(quality.MAIN_TARGETS)
    # ReDial is another domain: reported on, never selected on
    redial = _example("uss", "ReDial-3", {"corpus": "ReDial"})
    assert not any(p.keep(redial) for p in quality.PAIRS if p.role == "selection" and p.source == "uss"
                   and p.target in ("resolution", "escalation"))
    assert any(p.cross_source for p in quality.PAIRS if p.target == "resolution")
    assert not any(p.cross_source for p in quality.PAIRS if p.target in ("empathy", "repeat_inquiry"))


def test_protocol_labels_on_hand_made_examples():
    ratings = [[3, 3, 3], [], [2, 2, 3], []]  # the third turn: mean 2.33, clearly unhappy
    unhappy = _example("uss", "MWOZ-1", {"ratings": ratings, "overall": [4, 4, 3]})
    mild = _example("uss", "SGD-2", {"ratings": [[3, 2, 3], []], "overall": [3, 3, 3]})
    assert quality.uss_satisfied(unhappy) == 1.0 and quality.uss_satisfied(mild) == 0.0
    assert quality.uss_satisfied(_example("uss", "SGD-3", {"ratings": ratings, "overall": None})) is None
    assert quality.uss_clearly_dissatisfied(unhappy) == 1.0
    assert quality.uss_clearly_dissatisfied(mild) == 0.0  # mean 2.67: below 3, not below 2.5
    assert quality.uss_corpus(mild) == "SGD"  # no `corpus` recorded: the id prefix
    assert quality.uss_corpus(_example("uss", "x-1", {"corpus": "ReDial"})) == "ReDial"
    assert quality.stc3_resolved(_example("stc3", "d1", {"A_mean": 0.2})) == 1.0
    assert quality.stc3_resolved(_example("stc3", "d2", {"A_mean": 0.0})) == 0.0
    at_half = quality.share_at_least_half("escalation")
    assert at_half(_example("dbdc3", "a", labels={"escalation": np.float32(0.5)})) == 1.0
    assert at_half(_example("dbdc3", "b", labels={"escalation": np.float32(0.4)})) == 0.0
    assert at_half(_example("dbdc3", "c")) is None
    levels = {"emotional_reactions": 2, "interpretations": 0, "explorations": 1}
    assert quality.empathy_total(_example("epitome", "e", {"levels": levels})) == 3.0
    del levels["explorations"]
    assert quality.empathy_total(_example("epitome", "f", {"levels": levels})) is None
    # a pair keeps only its split, its filter and labelled items
    pair = next(p for p in quality.PAIRS if p.name == "resolution/uss-task/dev")
    dev_task = _example("uss", _group_in("uss", "dev", "MWOZ"), {"corpus": "MWOZ", "overall": [5, 4, 4]})
    dev_redial = _example("uss", _group_in("uss", "dev", "ReDial"), {"corpus": "ReDial", "overall": [5]})
    train_task = _example("uss", _group_in("uss", "train", "SGD"), {"corpus": "SGD", "overall": [5]})
    unlabelled = _example("uss", _group_in("uss", "dev", "SGD"), {"corpus": "SGD", "overall": None})
    assert pair.items([dev_task, dev_redial, train_task, unlabelled]) == [(dev_task, 1.0)]


@pytest.fixture(scope="module")
def protocol_data_dir(tmp_path_factory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("protocol-data"), seed=1,
                           per_split={"train": 8, "dev": 6, "report": 6}, uss_files=("MWOZ", "ReDial"))


def test_protocol_end_to_end_reuses_the_single_task_cache(protocol_data_dir, tiny_model_dir,
                                                          tiny_encoder_dir, tmp_path, monkeypatch):
    cache, json_path = tmp_path / "cache", tmp_path / "protocol.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quality.main(["--protocol", "--model", str(tiny_model_dir), "--data-dir", str(protocol_data_dir),
                      "--encoder", tiny_encoder_dir, "--cache-dir", str(cache), "--threads", "1",
                      "--single-task-targets", "empathy", "--n-resamples", "20",
                      "--c-grid", "0.1,10", "--json", str(json_path)])
    first = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(first["pairs"]) == {p.name for p in quality.PAIRS}
    assert len(list(cache.glob("empathy-*.json"))) == 1 and set(first["single_task"]) == {"empathy"}
    assert first["single_task"]["empathy"]["cached"] is False
    for name, p in first["pairs"].items():
        assert p["n"] > 0, name
        assert "tfidf" in p and ("single_task" in p) == (p["target"] == "empathy"), name
        if p["metric"] == "auroc":
            assert 0 <= p["ece_model"] <= 1, name
    empathy = first["pairs"]["empathy/epitome/report"]
    assert empathy["diff_single_task"] == pytest.approx(empathy["model"] - empathy["single_task"])
    assert np.isfinite(first["selection_score"])

    def no_training(*args, **kwargs):
        raise AssertionError("the cached single-task reference was trained again")

    monkeypatch.setattr(quality.baselines, "fine_tune_single_task", no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = quality.run_protocol(tiny_model_dir, protocol_data_dir, pairs="report", tfidf=False,
                                      single_task_targets=("empathy",), encoder=tiny_encoder_dir,
                                      cache_dir=cache, n_resamples=20)
    assert second["single_task"]["empathy"]["cached"] is True
    assert {p["role"] for p in second["pairs"].values()} == {"report"}
    assert second["pairs"]["empathy/epitome/report"]["single_task"] == pytest.approx(
        empathy["single_task"])
    assert np.isnan(second["selection_score"])  # no selection pair ran
    markdown = quality.protocol_markdown(second)
    assert "empathy/epitome/report" in markdown and "not available for: escalation" in markdown


def test_without_closing_cuts_every_trailing_closing_and_keeps_labels_and_key():
    t = transcript("c1", [("customer", "my router keeps dropping"), ("agent", "restart it in safe mode"),
                          ("customer", "ok thanks"), ("agent", "anything else?"),
                          ("customer", "no that's all, bye"), ("agent", "have a nice day")])
    e = Example(t, "uss", "MWOZ-1", labels={"escalation": np.float32(1.0)}, info={"overall": [5]})
    cut = quality.without_closing(e)
    assert [x.text for x in cut.transcript.scored_turns] == ["my router keeps dropping",
                                                            "restart it in safe mode"]
    assert cut.key == e.key and cut.labels is e.labels and cut.info is e.info
    # a confirmation that says something is content, not a closing; no closing: the same example
    content = transcript("c2", [("customer", "my router keeps dropping"), ("agent", "restart it"),
                                ("customer", "that worked, the connection is stable now")])
    same = Example(content, "uss", "MWOZ-2")
    assert quality.without_closing(same) is same


def test_protocol_with_the_closing_cut_scores_cut_dev_and_report_conversations(
        protocol_data_dir, tiny_model_dir, monkeypatch):
    load = quality.load_sources

    def with_closings(data_dir):  # every USS conversation ends with thanks and a farewell
        loaded = load(data_dir)
        loaded["uss"] = [dataclasses.replace(e, transcript=transcript(
            e.transcript.id, [(x.role, x.text) for x in e.transcript.scored_turns]
            + [("customer", "great thanks"), ("agent", "you are welcome")])) for e in loaded["uss"]]
        return loaded

    scored, trained = {}, {}
    score = quality.score_items
    monkeypatch.setattr(quality, "load_sources", with_closings)
    monkeypatch.setattr(quality, "score_items",
                        lambda auditor, items: scored.setdefault("items", items) and score(auditor, items))
    training_set = quality.training_set
    monkeypatch.setattr(quality, "training_set", lambda target, loaded: trained.setdefault(
        target, loaded) and training_set(target, loaded))
    with pytest.raises(ValueError, match="closing"):
        quality.run_protocol(tiny_model_dir, protocol_data_dir, closing="removed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = quality.run_protocol(tiny_model_dir, protocol_data_dir, single_task=False,
                                       n_resamples=10, closing="cut")
    assert results["closing"] == "cut"
    uss = [e for rows in scored["items"].values() for e, _ in rows if e.source == "uss"]
    assert uss and all(e.transcript.scored_turns[-1].text != "you are welcome" for e in uss)
    train = [e for e in trained["resolution"]["uss"] if e.split == "train"]
    assert train and all(e.transcript.scored_turns[-1].text == "you are welcome" for e in train)


def test_resolutions_uss_pairs_score_every_system_on_the_conversation_cut_by_the_protocols_reading(
        protocol_data_dir, tiny_model_dir, monkeypatch):
    load = quality.load_sources
    closing = "you've been a great help, thank you for your assistance"
    assert quality.PROTOCOL_CUT.is_pleasantry(closing)

    def with_closings(data_dir):
        loaded = load(data_dir)
        loaded["uss"] = [dataclasses.replace(e, transcript=transcript(
            e.transcript.id, [(x.role, x.text) for x in e.transcript.scored_turns]
            + [("customer", closing), ("agent", "you are welcome")])) for e in loaded["uss"]]
        return loaded

    scored = []
    score = quality.score_items
    monkeypatch.setattr(quality, "load_sources", with_closings)
    monkeypatch.setattr(quality, "score_items",
                        lambda auditor, items: scored.append(items) or score(auditor, items))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = quality.run_protocol(tiny_model_dir, protocol_data_dir, single_task=False,
                                       n_resamples=10)
        kept = quality.run_protocol(tiny_model_dir, protocol_data_dir, single_task=False,
                                    n_resamples=10, closing="kept")
    assert results["closing"] == "protocol" and kept["closing"] == "kept"
    cut = [e for e, _ in scored[0]["resolution/uss-task/report"]]
    whole = [e for e, _ in scored[0]["escalation/uss-task/report"]]
    assert cut and all(e.key.endswith("/cut") and e.transcript.scored_turns[-1].text != "you are welcome"
                       for e in cut)
    assert {e.key + "/cut" for e in whole} >= {e.key for e in cut}  # the same conversations, whole
    assert all(e.transcript.scored_turns[-1].text == "you are welcome" for e in whole)
    # labels are the whole conversation's: a cut pair keeps its size and positives
    for name in ("resolution/uss-task/report", "resolution/uss-redial/report", "resolution/uss-task/dev"):
        assert {k: results["pairs"][name][k] for k in ("n", "positives")} == \
            {k: kept["pairs"][name][k] for k in ("n", "positives")}
    assert not any(e.key.endswith("/cut") for rows in scored[1].values() for e, _ in rows)
    said = [n for n, p in results["pairs"].items() if "without the customer's closing" in p["label"]]
    assert sorted(said) == sorted(p.name for p in quality.PAIRS if p.cut is not None)
    assert not any("without" in p["label"] for p in kept["pairs"].values())
    reference_items = quality.protocol_items("resolution", with_closings(protocol_data_dir))
    assert any(k.endswith("/cut") for k, _ in reference_items)  # the reference scores them cut too


def test_selection_score_is_the_mean_main_metric_of_the_selection_pairs(protocol_data_dir,
                                                                        tiny_model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = quality.selection_score(tiny_model_dir, protocol_data_dir, n_resamples=10)
    results = {"pairs": {"a": {"role": "selection", "model": 0.6}, "b": {"role": "report", "model": 0.1},
                         "c": {"role": "selection", "model": 0.8}}}
    assert quality.mean_main_metric(results) == pytest.approx(0.7)
    assert np.isfinite(score) and -1 <= score <= 1


def test_a_teacher_is_the_cached_reference_and_labels_its_training_conversations(
        protocol_data_dir, tiny_encoder_dir, tmp_path):
    """benchmarks/teachers.py trains the reference as the protocol does (it matches the
    cached one), and its labels are what `train.taught` mixes into those conversations."""
    loaded = load_sources(protocol_data_dir)
    cache = tmp_path / "cache"
    reference = quality.single_task_scores("escalation", loaded, tiny_encoder_dir, cache)
    out = tmp_path / "escalation.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teachers.main(["escalation", "-o", str(out), "--data-dir", str(protocol_data_dir),
                       "--encoder", tiny_encoder_dir, "--cache-dir", str(cache)])
    entry = json.loads(out.read_text())["escalation"]
    assert reference["scores"] and entry["max_diff_from_reference"] < 1e-4
    train = [e for s in quality.TRAINING["escalation"].sources
             for e in by_split(loaded[s], "train") if "escalation" in e.labels]
    assert set(entry["labels"]) == {e.key for e in train}
    assert all(len(p) == 2 and sum(p) == pytest.approx(1, abs=1e-5) for p in entry["labels"].values())
    mixed = taught(train, (str(out),), 1.0)
    assert [float(e.labels["escalation"]) for e in mixed] == pytest.approx(
        [entry["labels"][e.key][1] for e in train], abs=1e-6)


def test_a_teacher_fills_a_missing_reference_cache(protocol_data_dir, tiny_encoder_dir, tmp_path):
    """With no cached reference, the teacher's scores on the protocol items are cached as it:
    the same figures the protocol's own training gives, under the same fingerprint."""
    loaded = load_sources(protocol_data_dir)
    trained = quality.single_task_scores("escalation", loaded, tiny_encoder_dir, tmp_path / "a")
    out, filled = tmp_path / "escalation.json", tmp_path / "b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teachers.main(["escalation", "-o", str(out), "--data-dir", str(protocol_data_dir),
                       "--encoder", tiny_encoder_dir, "--cache-dir", str(filled)])
    assert json.loads(out.read_text())["escalation"]["max_diff_from_reference"] is None
    cached = quality.single_task_scores("escalation", loaded, tiny_encoder_dir, filled, train=False)
    assert cached["fingerprint"] == trained["fingerprint"] and cached["cached"]
    assert set(cached["scores"]) == set(trained["scores"])
    assert max(abs(cached["scores"][k] - s) for k, s in trained["scores"].items()) < 1e-4
