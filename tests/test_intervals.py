"""The paired percentile bootstrap: reproducible, covering, narrower when paired."""

import numpy as np
import pytest

from pmpo_ray.evaluation.intervals import (
    mean_ci,
    paired_ci,
    prompt_intervals,
    stratified_paired_ci,
    within_noise,
)


def test_mean_ci_is_reproducible_with_a_seed_and_changes_with_another():
    values = np.random.default_rng(1).normal(size=40).tolist()
    assert mean_ci(values, seed=3) == mean_ci(values, seed=3)
    assert mean_ci(values, seed=3) != mean_ci(values, seed=4)
    low, high = mean_ci(values)
    assert low < float(np.mean(values)) < high


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    trials, covered = 200, 0
    for seed in range(trials):
        sample = rng.normal(loc=1.5, scale=1.0, size=50)
        low, high = mean_ci(sample, resamples=500, seed=seed)
        covered += low <= 1.5 <= high
    assert 0.88 <= covered / trials <= 0.99


def test_mean_ci_width_matches_the_standard_error():
    sample = np.random.default_rng(2).normal(scale=2.0, size=400)
    low, high = mean_ci(sample)
    stderr = sample.std(ddof=1) / np.sqrt(sample.size)
    assert high - low == pytest.approx(2 * 1.96 * stderr, rel=0.1)


def test_bounded_accuracies_keep_the_interval_inside_0_and_1():
    low, high = mean_ci([1.0] * 23 + [0.0])
    assert 0.0 <= low < high <= 1.0
    assert mean_ci([1.0] * 10) == (1.0, 1.0)


def test_one_example_is_its_own_interval_and_none_is_an_error():
    assert mean_ci([0.7]) == (0.7, 0.7)
    assert paired_ci([0.7], [0.2]) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="aligned by example"):
        paired_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="no groups"):
        stratified_paired_ci([])


def test_paired_interval_is_narrower_than_unpaired_for_correlated_values():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(scale=2.0, size=40)  # what the examples share across prompts
    reference = difficulty + rng.normal(scale=0.1, size=40)
    values = difficulty - 0.2 + rng.normal(scale=0.1, size=40)
    paired = paired_ci(values, reference)
    assert not within_noise(paired) and paired[1] < 0  # the -0.2 shift is found
    # Unpaired: the two means' intervals, with the between-example spread left in.
    a, b = mean_ci(values, seed=1), mean_ci(reference, seed=2)
    unpaired_width = np.hypot(a[1] - a[0], b[1] - b[0])
    assert paired[1] - paired[0] < unpaired_width / 5


def test_within_noise_is_whether_the_interval_holds_zero():
    assert within_noise((-0.3, 0.05)) and within_noise((0.0, 0.2)) and within_noise((-1, 0))
    assert not within_noise((0.01, 0.2)) and not within_noise((-0.3, -0.01))


def test_stratified_interval_averages_tasks_with_equal_weight():
    rng = np.random.default_rng(5)
    big = (list(rng.normal(-1.0, 0.1, 200)), [0.0] * 200)
    small = (list(rng.normal(1.0, 0.1, 10)), [0.0] * 10)
    low, high = stratified_paired_ci([big, small], seed=0)
    assert low < 0.0 < high and abs(low + high) < 0.2  # each task weighs 1/2, not by size
    assert stratified_paired_ci([big, small]) == stratified_paired_ci([big, small])
    assert stratified_paired_ci([([2.0], [1.0]), ([4.0], [1.0])]) == (2.0, 2.0)


def test_stratified_interval_of_one_group_is_the_paired_interval():
    values, reference = [1.0, 2.0, 0.5, 3.0, 1.5], [0.5, 1.0, 0.7, 2.0, 1.0]
    assert stratified_paired_ci([(values, reference)], seed=9) == paired_ci(
        values, reference, seed=9
    )


def test_prompt_intervals_cover_measured_metrics_and_the_paired_change():
    initial = {"heldout_ce": [2.0, 1.0, 3.0, 2.5], "accuracy": [0.0, 1.0, 0.0, 0.0]}
    optimized = {"heldout_ce": [1.5, 0.8, 2.0, 2.1], "accuracy": [1.0, 1.0, 0.0, 1.0]}
    optimized["option_accuracy"] = None
    ci95, vs_initial = prompt_intervals(optimized, initial)
    assert set(ci95) == {"heldout_ce", "accuracy"}
    assert ci95["heldout_ce"][0] <= 1.6 <= ci95["heldout_ce"][1]
    assert vs_initial["heldout_ce"]["change"] == pytest.approx(-0.525)
    low, high = vs_initial["heldout_ce"]["ci95"]
    assert low <= -0.525 <= high < 0  # every example improved
    assert vs_initial["accuracy"]["change"] == pytest.approx(0.5)
    assert set(vs_initial) == {"heldout_ce", "accuracy"}
    assert prompt_intervals(initial, None)[1] == {}
    assert prompt_intervals({"heldout_ce": [1.0, 2.0]}, {"heldout_ce": None})[1] == {}
