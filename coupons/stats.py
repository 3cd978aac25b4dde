"""Confidence intervals for an experiment's repurchase rates, in closed form, stdlib only.

- A single proportion: Wilson's score interval (Wilson 1927; method 3 of Newcombe,
  "Two-sided confidence intervals for the single proportion: comparison of seven methods",
  Statistics in Medicine 17, 857-872, 1998).
- The difference of two independent proportions p1 - p2: Newcombe's hybrid score interval,
  built from the two Wilson intervals (method 10 of Newcombe, "Interval estimation for the
  difference between independent proportions: comparison of eleven methods", Statistics in
  Medicine 17, 873-890, 1998). It keeps close to its nominal coverage at small counts and at
  rates of 0 or 1, where the textbook Wald interval (p1 - p2 ± z·SE) is too narrow or
  degenerate; it is what statsmodels' `confint_proportions_2indep(method="newcomb")`, R's
  `DescTools::BinomDiffCI(method="score")` and `Epi::ci.pd` compute.

With L_i, U_i the Wilson limits of p_i:

    low  = (p1 - p2) - sqrt((p1 - L1)^2 + (U2 - p2)^2)
    high = (p1 - p2) + sqrt((U1 - p1)^2 + (p2 - L2)^2)
"""

from __future__ import annotations

from math import sqrt

Z95 = 1.959963984540054
"""The standard normal's 97.5th percentile: a two-sided 95% interval."""


def _check(successes: int, trials: int) -> None:
    if isinstance(successes, bool) or isinstance(trials, bool) or not isinstance(successes, int) \
            or not isinstance(trials, int):
        raise TypeError("successes and trials must be whole numbers")
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval for successes/trials; None when there are no trials."""
    _check(successes, trials)
    if trials == 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 or n successes one limit is exactly 0 or 1; floating point can miss it by 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def newcombe_difference(successes1: int, trials1: int, successes2: int, trials2: int,
                        z: float = Z95) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2 (group 1 minus group 2); None when
    either group has no trials."""
    first = wilson_interval(successes1, trials1, z)
    second = wilson_interval(successes2, trials2, z)
    if first is None or second is None:
        return None
    p1, p2 = successes1 / trials1, successes2 / trials2
    (low1, high1), (low2, high2) = first, second
    difference = p1 - p2
    low = difference - sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    high = difference + sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    return max(-1.0, low), min(1.0, high)
