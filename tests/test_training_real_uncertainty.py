"""The peak-separation measure of the uncertainty evaluation, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from xsa_enhance.training.real_uncertainty import roc_auc, score_peaks


def test_roc_auc_matches_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    pos = rng.normal(1.0, 1.0, 40)
    neg = rng.normal(0.0, 1.0, 25)
    scores = np.concatenate([pos, neg])
    labels = np.r_[np.ones(40, bool), np.zeros(25, bool)]
    u = stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert roc_auc(scores, labels) == pytest.approx(u / (40 * 25))
    assert roc_auc(np.r_[2.0, 3.0, 0.0], np.r_[True, True, False]) == 1.0
    assert roc_auc(np.r_[0.0, 3.0], np.r_[True, False]) == 0.0
    assert roc_auc(np.r_[1.0, 1.0], np.r_[True, False]) == 0.5  # ties count one half
    assert np.isnan(roc_auc(np.r_[1.0, 2.0], np.r_[True, True]))  # one class only
    # a peak that cannot be scored (NaN) ranks lowest
    assert roc_auc(np.r_[np.nan, 1.0], np.r_[True, False]) == 0.0


def test_scores_are_excess_over_local_median_divided_by_sigma_on_either_grid():
    for factor in (1, 2):
        n = 40 * factor
        out = np.full((n, n), 2.0)
        yc = xc = 20 * factor
        out[yc, xc] = 12.0
        sigma = np.full((n, n), 0.5)
        naive = np.full((n, n), 2.0)
        mask = np.ones((n, n), bool)
        # the peak is given in 1x coordinates
        y1 = np.array([(yc + 0.5) / factor - 0.5])
        s_net, s_naive = score_peaks(out, sigma, naive, mask, y1, y1, factor)
        assert s_net[0] == pytest.approx((12.0 - 2.0) / 0.5)
        assert s_naive[0] == pytest.approx((12.0 - 2.0) / 2.0)
