"""The review's 95% intervals: Wilson for one rate, Newcombe's method 10 for a difference.

The expected values are published ones (Newcombe 1998, four decimals) and, for a wider
grid, statsmodels 0.15.0's `confint_proportions_2indep(..., method="newcomb",
compare="diff")` and `proportion_confint(..., method="wilson")`, recorded here as literals
so the test needs neither library. statsmodels compares count1/nobs1 - count2/nobs2, the
same order as `newcombe_difference`.
"""

from __future__ import annotations

import pytest

from coupons.stats import Z95, newcombe_difference, wilson_interval

# Newcombe 1998, "Interval estimation for the difference between independent proportions",
# Table II, method 10 (also the values the R package propint tests against).
PUBLISHED_DIFFERENCES = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
]

# Newcombe 1998, "Two-sided confidence intervals for the single proportion", method 3 (Wilson).
PUBLISHED_SINGLE = [
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
]

# statsmodels 0.15.0, full precision: small counts, zeros, all-successes, a lopsided pair.
STATSMODELS_DIFFERENCES = [
    ((56, 70, 48, 80), (0.05243147240236498, 0.33387265403690614)),
    ((9, 10, 3, 10), (0.1705227239345029, 0.809017973535488)),
    ((6, 7, 2, 7), (0.05822792748231209, 0.8062496375242278)),
    ((5, 56, 0, 29), (-0.038137147903536936, 0.19256001385511165)),
    ((0, 10, 0, 20), (-0.1611251580528194, 0.27753279986288926)),
    ((0, 10, 0, 10), (-0.27753279986288926, 0.27753279986288926)),
    ((10, 10, 0, 20), (0.6790860371419145, 1.0)),
    ((10, 10, 0, 10), (0.6075093504305241, 1.0)),
    ((30, 150, 18, 150), (-0.003437252020103948, 0.16298809956722837)),
    ((0, 1, 1, 1), (-1.0, 0.12210872068194178)),
]

STATSMODELS_SINGLE = [
    ((81, 263), (0.2552885198782742, 0.36620957698280004)),
    ((15, 148), (0.06238639953073628, 0.16048724172330803)),
    ((0, 10), (0.0, 0.27753279986288926)),
    ((10, 10), (0.7224672001371106, 1.0)),
    ((1, 29), (0.006113214292762667, 0.17175521879320294)),
]


@pytest.mark.parametrize(("counts", "expected"), PUBLISHED_DIFFERENCES)
def test_difference_matches_newcombes_published_table(counts, expected):
    low, high = newcombe_difference(*counts)
    assert (round(low, 4), round(high, 4)) == expected


@pytest.mark.parametrize(("counts", "expected"), PUBLISHED_SINGLE)
def test_single_rate_matches_newcombes_published_wilson_intervals(counts, expected):
    low, high = wilson_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


@pytest.mark.parametrize(("counts", "expected"), STATSMODELS_DIFFERENCES)
def test_difference_matches_statsmodels_to_the_last_digits(counts, expected):
    assert newcombe_difference(*counts) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("counts", "expected"), STATSMODELS_SINGLE)
def test_single_rate_matches_statsmodels_to_the_last_digits(counts, expected):
    assert wilson_interval(*counts) == pytest.approx(expected, abs=1e-12)


def test_zero_and_full_counts_hit_the_bounds_exactly():
    # A control group where nobody came back must show 0, not -1e-17.
    assert wilson_interval(0, 25)[0] == 0.0
    assert wilson_interval(25, 25)[1] == 1.0


def test_the_difference_is_first_minus_second():
    low, high = newcombe_difference(9, 10, 3, 10)
    assert newcombe_difference(3, 10, 9, 10) == pytest.approx((-high, -low), abs=1e-12)


def test_an_empty_group_has_no_interval():
    assert wilson_interval(0, 0) is None
    assert newcombe_difference(0, 0, 3, 10) is None
    assert newcombe_difference(3, 10, 0, 0) is None


@pytest.mark.parametrize("counts", [(-1, 10), (11, 10), (1, -1)])
def test_impossible_counts_are_refused(counts):
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(*counts)


def test_z_is_the_normal_975th_percentile():
    from statistics import NormalDist

    assert Z95 == pytest.approx(NormalDist().inv_cdf(0.975), abs=1e-15)
