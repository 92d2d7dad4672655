"""The report's statistics by simulation: fixed seeds, a stated number of replicates, and a
binomial tolerance on each rate (3 standard deviations of the replicate count unless said).

- intervals cover a known mean at about 95% (bootstrap, cluster bootstrap, Wilson);
- the CUSUM decline alert stays quiet on stationary noise at its stated rate and fires on a
  planted drop; Benjamini-Hochberg keeps the chance of any false alert near 5%;
- the adjusted AI-vs-human difference removes a planted mix effect (Simpson's paradox);
- the paired comparison finds a planted shift.
"""

from __future__ import annotations

import math

import numpy as np

from qualaudit.metrics import (
    benjamini_hochberg,
    mean_interval,
    standardized_difference,
    wilson_interval,
)
from qualaudit.report.trends import series_with_tests


def _within(hits: int, replicates: int, rate: float, sds: float = 3.0) -> bool:
    sd = math.sqrt(replicates * rate * (1 - rate))
    return abs(hits - replicates * rate) <= sds * sd


def test_bootstrap_interval_covers_the_mean_at_about_95_percent():
    rng = np.random.default_rng(11)
    replicates, hits = 400, 0
    for seed in range(replicates):
        sample = rng.beta(2, 5, size=120)  # true mean 2/7
        r = mean_interval(sample, n_resamples=500, seed=seed)
        hits += r["low"] <= 2 / 7 <= r["high"]
    assert _within(hits, replicates, 0.95, sds=3.5)  # percentile bootstrap runs a bit short


def test_cluster_bootstrap_covers_where_the_plain_one_undercovers():
    rng = np.random.default_rng(12)
    replicates, clustered, plain = 300, 0, 0
    for seed in range(replicates):
        customers = np.repeat(np.arange(40), 5)  # 5 conversations per customer
        values = rng.normal(0, 1, 40)[customers] + rng.normal(0, 0.5, customers.size)
        clustered += _covers(mean_interval(values, customers, n_resamples=400, seed=seed), 0.0)
        plain += _covers(mean_interval(values, n_resamples=400, seed=seed), 0.0)
    assert _within(clustered, replicates, 0.95, sds=3.5)
    assert plain < 0.75 * replicates  # the correlation the cluster bootstrap accounts for


def _covers(result, truth):
    return result["low"] <= truth <= result["high"]


def test_wilson_interval_covers_a_small_share():
    rng = np.random.default_rng(13)
    replicates = 2000
    successes = rng.binomial(80, 0.1, size=replicates)
    hits = sum(lo <= 0.1 <= hi for lo, hi in (wilson_interval(s, 80) for s in successes))
    assert _within(hits, replicates, 0.95, sds=4)  # Wilson's coverage oscillates with n, p


def _weekly(rng, drop: float = 0.0, drop_from: int = 18, weeks: int = 26):
    """Rows of a resolution-like score over `weeks` periods, ~120 a period."""
    sizes = rng.poisson(120, weeks)
    codes = np.repeat(np.arange(weeks), sizes)
    p = np.where(codes >= drop_from, 0.7 - drop, 0.7)
    return rng.binomial(1, p).astype(float), codes


def test_cusum_stays_quiet_on_stationary_noise_at_the_stated_rate():
    rng = np.random.default_rng(14)
    replicates, alarms = 400, 0
    for seed in range(replicates):
        values, codes = _weekly(rng)
        result = series_with_tests(values, codes, 26, 8, -1, seed=seed)
        alarms += result["cusum_p"] <= 0.05
    assert _within(alarms, replicates, 0.05)


def test_cusum_fires_on_a_planted_drop():
    rng = np.random.default_rng(15)
    replicates, alarms, starts = 100, 0, []
    for seed in range(replicates):
        values, codes = _weekly(rng, drop=0.10)  # 0.70 -> 0.60 for the last 8 of 26 weeks
        result = series_with_tests(values, codes, 26, 8, -1, seed=seed)
        alarms += result["cusum_p"] <= 0.05
        starts.append(result["change_from"])
    assert alarms >= 95
    assert 16 <= np.median(starts) <= 20  # planted at period 18


def test_a_fall_never_alarms_a_target_where_a_rise_is_worse():
    rng = np.random.default_rng(16)
    replicates, alarms = 100, 0
    for seed in range(replicates):
        values, codes = _weekly(rng, drop=0.10)  # a fall: good news for, say, escalation
        alarms += series_with_tests(values, codes, 26, 8, +1, seed=seed)["cusum_p"] <= 0.05
    assert alarms <= 5  # at most the false-alarm rate of the weeks before the fall


def test_benjamini_hochberg_keeps_false_alerts_near_the_rate_over_many_series():
    rng = np.random.default_rng(17)
    replicates = 2000
    any_alert = sum(benjamini_hochberg(rng.uniform(size=30), 0.05).any() for _ in range(replicates))
    assert _within(any_alert, replicates, 0.05)
    p = np.concatenate([np.full(5, 1e-4), rng.uniform(size=25)])
    assert benjamini_hochberg(p, 0.05)[:5].all()


def test_adjustment_removes_a_planted_mix_effect():
    rng = np.random.default_rng(18)
    replicates, covered, raw_wrong_sign = 100, 0, 0
    for seed in range(replicates):
        # stratum 0 easy (0.9), stratum 1 hard (0.4); AI is 0.05 better within each, but
        # takes mostly hard conversations: the raw difference favours humans
        strata = np.r_[np.zeros(100), np.ones(400), np.zeros(400), np.ones(100)].astype(int)
        is_ai = np.r_[np.ones(500), np.zeros(500)].astype(bool)
        p = np.where(strata == 0, 0.9, 0.4) + np.where(is_ai, 0.05, 0.0)
        values = rng.binomial(1, p).astype(float)
        result = standardized_difference(values, is_ai, strata, n_resamples=300, seed=seed)
        covered += result["adjusted"]["low"] <= 0.05 <= result["adjusted"]["high"]
        raw_wrong_sign += result["raw"]["high"] < 0
    assert _within(covered, replicates, 0.95, sds=3.5)
    assert raw_wrong_sign >= 95


def test_paired_comparison_finds_a_planted_shift_and_no_shift_when_none():
    rng = np.random.default_rng(19)
    replicates, found, false = 200, 0, 0
    for seed in range(replicates):
        base = rng.beta(3, 2, 400)
        shifted = np.clip(base + 0.03 + rng.normal(0, 0.1, 400), 0, 1)
        same = np.clip(base + rng.normal(0, 0.1, 400), 0, 1)
        found += mean_interval(shifted - base, n_resamples=400, seed=seed)["low"] > 0
        r = mean_interval(same - base, n_resamples=400, seed=seed)
        false += not (r["low"] <= 0 <= r["high"])
    assert found >= 0.95 * replicates
    assert _within(false, replicates, 0.05, sds=3.5)


def test_mann_kendall_holds_its_rate_on_noise_and_finds_a_trend():
    from qualaudit.metrics import mann_kendall

    rng = np.random.default_rng(20)
    replicates = 2000
    p = np.array([mann_kendall(rng.normal(size=26))["p_decrease"] for _ in range(replicates)])
    assert _within(int((p <= 0.05).sum()), replicates, 0.05)
    assert _within(int((p <= 0.01).sum()), replicates, 0.01)  # the tail BH reads
    found = sum(mann_kendall(rng.normal(size=26) - 0.1 * np.arange(26))["p_decrease"] <= 0.05
                for _ in range(100))
    assert found >= 95


def test_adjusted_difference_intervals_widen_when_customers_cluster():
    rng = np.random.default_rng(21)
    customers = np.repeat(np.arange(200), 5)  # 5 conversations each, strongly alike
    values = rng.normal(0, 1, 200)[customers] + rng.normal(0, 0.3, customers.size)
    is_ai = customers < 100
    strata = customers % 2
    plain = standardized_difference(values, is_ai, strata, n_resamples=400)
    clustered = standardized_difference(values, is_ai, strata, clusters=customers, n_resamples=400)
    width = lambda r: r["adjusted"]["high"] - r["adjusted"]["low"]  # noqa: E731
    assert width(clustered) > 1.6 * width(plain)  # design effect about 1 + 4 x 0.92
    assert clustered["adjusted"]["value"] == plain["adjusted"]["value"]


def test_a_whole_report_on_stationary_data_raises_no_alert():
    """End to end, 30 series x scores per report, 3 fixed seeds (no change planted): BH keeps
    both tests quiet (20 seeds gave none when this was written)."""
    from qualaudit.report.build import ReportOptions, build_report
    from qualaudit.report.synthetic import SyntheticSpec, synthetic_rows

    for seed in range(3):
        rows = list(synthetic_rows(SyntheticSpec(n=3000, weeks=26, seed=seed, decline_week=None,
                                                 model_change_week=None, per_turn_share=0)))
        report = build_report(rows, ReportOptions(by=("agent_type", "channel"), over="week",
                                                  n_boot=100))
        assert report["trends"]["alerts"] == []


def test_wilson_on_the_effective_n_covers_clustered_decisions():
    from qualaudit.metrics import design_effect

    rng = np.random.default_rng(22)
    replicates, plain, effective = 400, 0, 0
    customers = np.repeat(np.arange(60), 5)
    for _ in range(replicates):
        p = np.clip(rng.beta(2, 2, 60), 0, 1)[customers]  # customers differ; mean share 0.5
        decisions = rng.binomial(1, p).astype(float)
        lo, hi = wilson_interval(decisions.sum(), decisions.size)
        plain += lo <= 0.5 <= hi
        deff = design_effect(decisions, customers)
        lo, hi = wilson_interval(decisions.sum() / deff, decisions.size / deff)
        effective += lo <= 0.5 <= hi
    assert _within(effective, replicates, 0.95, sds=3.5)
    assert plain < effective - 10  # what ignoring the clusters costs
    assert design_effect(np.r_[np.zeros(50), np.ones(50)], np.arange(100)) == 1.0
