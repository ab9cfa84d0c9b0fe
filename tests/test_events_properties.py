"""Property tests (hypothesis): slices, counts conservation, screening and binning.

Every expectation is computed by a separate, deliberately plain implementation (Python loops,
``numpy.histogram2d``), never by the code under test.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsa_enhance.events import (
    EventsConfig,
    bin_events,
    make_slices,
    normalize_gtis,
    parse_expression,
    process_event_list,
    screen_and_bin,
)
from xsa_enhance.events.expression import DEFAULT_EXPRESSION
from xsa_enhance.events.testing import write_event_list
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def gti_sets(draw, max_n=6):
    """Sorted, disjoint GTIs with integer-ish and fractional edges, 0-80 ks in total."""
    n = draw(st.integers(1, max_n))
    t = draw(st.floats(0, 1e4))
    out = []
    for _ in range(n):
        gap = draw(st.floats(0.5, 5e3))
        length = draw(st.one_of(st.floats(1.0, 3e4), st.sampled_from([5000.0, 10000.0, 20000.0])))
        t += gap
        out.append((t, t + length))
        t += length
    return np.array(out)


def _in_any(t, gtis):
    return any(a <= t < b for a, b in gtis)


def _plain_screen(c, i):
    """The paper's selection and the 0.5-2 keV band for event i, written out by hand."""
    flag = int(c["FLAG"][i])
    ok_flag = flag == 0 or (flag & 0x10000) != 0
    return (
        c["PI"][i] > 300 and c["RAWY"][i] > 12 and c["PATTERN"][i] <= 4 and ok_flag
        and 500 <= c["PI"][i] <= 2000
    )  # fmt: skip


def _plain_image(detx, dety, keep, grid):
    sel = np.asarray(keep, dtype=bool)
    h, _, _ = np.histogram2d(
        np.asarray(dety, float)[sel], np.asarray(detx, float)[sel], bins=[grid.y_edges, grid.x_edges]
    )
    return h.astype(np.int64)


@SETTINGS
@given(gti_sets(), st.sampled_from(["all", (10.0,), (20.0, 50.0), (7.5, 10.0, 30.0)]))
def test_slices_partition_clean_time(gtis, lengths):
    total = float(np.sum(gtis[:, 1] - gtis[:, 0]))
    slices = make_slices(gtis, lengths_ks=lengths)
    # documented rule: n slices of L fit when n * L <= T + 1e-6 s (GTI sums carry rounding)
    if lengths == "all":
        wanted = [10.0 * k for k in range(1, int((total + 1e-6) // 10000) + 1)]
    else:
        wanted = [v for v in lengths if v * 1000 <= total + 1e-6]
    by_len = {}
    for s in slices:
        by_len.setdefault(s.length_ks, []).append(s)
    assert sorted(by_len) == sorted(wanted)
    for length, group in by_len.items():
        n = math.floor((total + 1e-6) / (length * 1000))
        assert len(group) == n
        assert [s.index for s in group] == list(range(n))
        assert all(s.n_slices == n for s in group)
        for s in group:
            assert math.isclose(s.exposure_s, length * 1000, abs_tol=1e-6)
            # inside the clean GTIs
            for a, b in s.gtis:
                assert any(ga - 1e-9 <= a and b <= gb + 1e-9 for ga, gb in gtis)
        # consecutive and never overlapping
        for s0, s1 in zip(group, group[1:]):
            assert s0.stop <= s1.start
        # the first starts with the clean time
        assert group[0].start == gtis[0, 0]


@SETTINGS
@given(gti_sets(max_n=4), st.integers(0, 2**31 - 1), st.sampled_from([(10.0,), (20.0,), (5.0, 15.0)]))
def test_counts_conserved_over_slices(gtis, seed, lengths):
    rng = np.random.default_rng(seed)
    n = 1500
    t0, t1 = gtis[0, 0] - 100, gtis[-1, 1] + 100
    times = np.sort(rng.uniform(t0, t1, n))
    # put some events exactly on GTI edges
    edges = gtis.ravel()
    k = min(len(edges), 20)
    times[:k] = edges[:k]
    times.sort()
    cols = {
        "TIME": times,
        "DETX": rng.integers(-18400, 14000, n).astype(np.int16),
        "DETY": rng.integers(-17600, 15400, n).astype(np.int16),
        "PI": rng.integers(0, 3000, n).astype(np.int16),
    }
    slices = make_slices(gtis, lengths_ks=lengths)
    for length in {s.length_ks for s in slices}:
        group = [s for s in slices if s.length_ks == length]
        total = np.zeros(GRID_1X.shape, np.int64)
        for s in group:
            total += screen_and_bin(cols, expression=None, band=(500, 2000), gtis=s.gtis)
        union = [tuple(g) for s in group for g in s.gtis]
        keep = [
            500 <= cols["PI"][i] <= 2000 and _in_any(times[i], union) for i in range(n)
        ]
        np.testing.assert_array_equal(total, _plain_image(cols["DETX"], cols["DETY"], keep, GRID_1X))
        # and every event of the union is in exactly one slice
        per_event = np.zeros(n, int)
        for s in group:
            per_event += np.array([_in_any(t, s.gtis) for t in times])
        assert per_event.max(initial=0) <= 1


@st.composite
def event_columns(draw):
    n = draw(st.integers(0, 400))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    pick = lambda vals: rng.choice(np.asarray(vals), n)  # noqa: E731
    return {
        "TIME": np.sort(rng.uniform(0, 1000, n)),
        "DETX": rng.integers(-18300, 13970, n).astype(np.int16),
        "DETY": rng.integers(-17540, 15370, n).astype(np.int16),
        "PI": pick([0, 299, 300, 301, 499, 500, 501, 1999, 2000, 2001, 11000]).astype(np.int16),
        "PATTERN": pick([0, 1, 4, 5, 12]).astype(np.uint8),
        "FLAG": pick([0, 1, 2, 0x10000, 0x10001, 0x20000, 0x30000]).astype(np.int32),
        "RAWY": pick([1, 12, 13, 100, 200]).astype(np.int16),
    }


@SETTINGS
@given(event_columns())
def test_screening_equals_plain_implementation(cols):
    n = len(cols["TIME"])
    keep = [_plain_screen(cols, i) for i in range(n)]
    expected = _plain_image(cols["DETX"], cols["DETY"], keep, GRID_1X)
    got = screen_and_bin(cols, expression=parse_expression(DEFAULT_EXPRESSION), band=(500, 2000))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int32
    # the same with GTIs: only events in [100, 400) and [600, 700)
    gtis = np.array([[100.0, 400.0], [600.0, 700.0]])
    keep_t = [keep[i] and _in_any(cols["TIME"][i], gtis) for i in range(n)]
    got_t = screen_and_bin(cols, expression=parse_expression(DEFAULT_EXPRESSION), band=(500, 2000), gtis=gtis)
    np.testing.assert_array_equal(got_t, _plain_image(cols["DETX"], cols["DETY"], keep_t, GRID_1X))


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_bin_events_equals_histogram2d(seed, as_float):
    rng = np.random.default_rng(seed)
    n = 5000
    if as_float:
        # float positions (never exactly on the last edge, where histogram2d differs)
        x = rng.uniform(-19000, 14500, n)
        y = rng.uniform(-18000, 16000, n)
    else:
        x = rng.integers(-19000, 14500, n).astype(np.int16)
        y = rng.integers(-18000, 16000, n).astype(np.int16)
    for grid in (GRID_1X, GRID_2X):
        got = bin_events(x, y, grid=grid)
        inside = (x >= grid.x_edges[0]) & (x < grid.x_edges[-1]) & (y >= grid.y_edges[0]) & (y < grid.y_edges[-1])
        np.testing.assert_array_equal(got, _plain_image(x, y, inside, grid))


def test_bin_events_int32_int64_inputs_agree():
    rng = np.random.default_rng(3)
    x = rng.integers(-19000, 14500, 10000)
    y = rng.integers(-18000, 16000, 10000)
    ref = bin_events(x.astype(np.float64), y.astype(np.float64))
    for dt in (np.int16, np.int32, np.int64):
        np.testing.assert_array_equal(bin_events(x.astype(dt), y.astype(dt)), ref)
    # huge values do not wrap around into the grid
    big = np.array([2**31 - 10, -(2**31) + 10, 2**40], dtype=np.int64)
    assert bin_events(big, np.zeros(3, np.int64)).sum() == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(gti_sets(max_n=3), st.integers(0, 2**31 - 1))
def test_process_event_list_conserves_counts(tmp_path, gtis, seed):
    """End to end from a file: every slice length partitions the counts of its union."""
    rng = np.random.default_rng(seed)
    n = 1000
    times = np.sort(rng.uniform(gtis[0, 0], gtis[-1, 1], n))
    ev = {
        "TIME": times,
        "DETX": rng.integers(-18000, 13000, n),
        "DETY": rng.integers(-17000, 15000, n),
        "PI": rng.integers(400, 2100, n),
        "PATTERN": rng.integers(0, 6, n),
        "FLAG": rng.choice([0, 1, 0x10000], n),
        "RAWY": rng.integers(1, 201, n),
    }
    path = write_event_list(tmp_path / f"ev{seed}.fits", ev, ccd_gtis={1: gtis, 2: gtis})
    # flare light curve: no 10-12 keV events, so nothing is a flare: clean = CCD GTIs
    obs = process_event_list(path, None, config=EventsConfig(slice_lengths_ks=(10, 20)))
    clean = normalize_gtis(gtis)
    # (bins of 100 s from the first start; runs shorter than 50 s at the edges are dropped)
    assert obs.clean_exposure_s <= float(np.sum(clean[:, 1] - clean[:, 0])) + 1e-6
    full = obs.full_image
    if full is None:  # everything dropped (GTIs shorter than the 50 s minimum)
        assert obs.clean_exposure_s == 0 and obs.slices == []
        return
    keep_full = [_plain_screen(ev, i) and _in_any(times[i], obs.clean_gtis) for i in range(n)]
    np.testing.assert_array_equal(full.counts, _plain_image(ev["DETX"], ev["DETY"], keep_full, GRID_1X))
    for length in (10.0, 20.0):
        group = obs.images(length)
        if not group:
            continue
        union = [tuple(g) for s in group for g in s.gtis]
        keep = [_plain_screen(ev, i) and _in_any(times[i], union) for i in range(n)]
        total = sum(s.counts.astype(np.int64) for s in group)
        np.testing.assert_array_equal(total, _plain_image(ev["DETX"], ev["DETY"], keep, GRID_1X))
