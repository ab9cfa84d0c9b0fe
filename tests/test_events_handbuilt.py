"""A hand-built observation with every count, flag, pattern, energy, GTI and flare known.

Every expected number below was worked out by hand from the event table (see the comments),
not by running the code.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from xsa_enhance.events import (
    EventsConfig,
    make_slices,
    process_event_list,
    read_event_list,
    read_image_fits,
    write_image_fits,
)
from xsa_enhance.events.testing import event_header, write_event_list, write_fbktsr
from xsa_enhance.instrument.grid import GRID_1X

# CCD GTIs: every CCD 1000-51000 s, CCD 5 has a hole 30000-30500 s.
CCD_GTIS = {c: [[1000.0, 51000.0]] for c in range(1, 13)}
CCD_GTIS[5] = [[1000.0, 30000.0], [30500.0, 51000.0]]

# FBKTSR in 10 s bins from 1000 to 51000 s, FLCUTTHR 0.4:
#   flare 20000-23000 (rate 5); flare 40000-40100 and 40130-40400 (leaves a 30 s good run,
#   shorter than 50 s, dropped); NaN bin 45000-45010; one bin exactly at the threshold
#   (12000-12010, rate 0.4, good).
# Clean GTIs = [1000,20000) [23000,30000) [30500,40000) [40400,45000) [45010,51000)
EXPECTED_CLEAN = np.array(
    [[1000, 20000], [23000, 30000], [30500, 40000], [40400, 45000], [45010, 51000]], dtype=float
)
EXPECTED_CLEAN_EXPOSURE = 19000 + 7000 + 9500 + 4600 + 5990  # = 46090 s


def _fbktsr(path):
    t = np.arange(1000.0, 51000.0, 10.0) + 5.0
    rate = np.full(t.shape, 0.2)
    lo = t - 5.0
    rate[(lo >= 20000) & (lo < 23000)] = 5.0
    rate[(lo >= 40000) & (lo < 40100)] = 3.0
    rate[(lo >= 40130) & (lo < 40400)] = 3.0
    rate[lo == 45000] = np.nan
    rate[lo == 12000] = 0.4
    return write_fbktsr(path, time=t, rate=rate, timedel=10.0, flcutthr=0.4)


def _pix(ix: int, iy: int) -> tuple[int, int]:
    """An integer DETX/DETY inside 1x pixel (ix, iy): its centre rounded down."""
    return int(np.floor(-18243.5 + 80 * ix)), int(np.floor(-17487.5 + 80 * iy))


# Event rows: (detx, dety, time, pi, pattern, flag, rawy, counted_in_full_image)
GOOD = dict(pi=1000, pattern=0, flag=0, rawy=100)


def _rows():
    rows = []
    A = _pix(10, 20)
    B = _pix(200, 300)

    def add(pos, time, counted, **kw):
        d = dict(GOOD)
        d.update(kw)
        rows.append((pos[0], pos[1], time, d["pi"], d["pattern"], d["flag"], d["rawy"], counted))

    # pixel A: 5 plain good events in clean time -> 5
    for t in (1500.0, 2500.0, 5000.0, 15000.0, 25000.0):
        add(A, t, True)
    # energies: PI 300 fails "PI > 300"; 499 and 2001 outside the band; 500 and 2000 inside
    add(A, 3000.0, False, pi=300)
    add(A, 3001.0, False, pi=499)
    add(A, 3002.0, True, pi=500)
    add(A, 3003.0, True, pi=2000)
    add(A, 3004.0, False, pi=2001)
    add(A, 3005.0, False, pi=11000)
    # rows, patterns, flags
    add(A, 3100.0, False, rawy=12)
    add(A, 3101.0, True, rawy=13)
    add(A, 3102.0, True, pattern=4)
    add(A, 3103.0, False, pattern=5)
    add(A, 3104.0, False, flag=1)
    add(A, 3105.0, True, flag=0x10000)
    add(A, 3106.0, True, flag=0x10001)  # corner bit set: kept by "(FLAG & 0x10000) != 0"
    add(A, 3107.0, False, flag=0x20000)
    # times: inside the flare, in CCD 5's hole, at GTI edges, in the dropped 30 s run,
    # in the NaN bin, in the threshold bin, outside the CCD GTIs
    add(B, 21000.0, False)
    add(B, 30200.0, False)
    add(B, 19999.999, True)
    add(B, 20000.0, False)  # GTIs are [start, stop)
    add(B, 23000.0, True)
    add(B, 40110.0, False)
    add(B, 45005.0, False)
    add(B, 12005.0, True)
    add(B, 500.0, False)
    add(B, 51000.0, False)
    add(B, 50999.0, True)
    # grid edges: DETX -18283 is in pixel 0, -18284 is off the grid; 13956 in the last
    # pixel (402), 13957 off; DETY -17527 pixel 0, 15352 the last row (410), 15353 off
    rows.append((-18283, -17527, 4000.0, 1000, 0, 0, 100, True))
    rows.append((-18284, -17527, 4001.0, 1000, 0, 0, 100, False))
    rows.append((13956, 15352, 4002.0, 1000, 0, 0, 100, True))
    rows.append((13957, 15352, 4003.0, 1000, 0, 0, 100, False))
    rows.append((13956, 15353, 4004.0, 1000, 0, 0, 100, False))
    # pixel boundary: DETX -18283 + 79 = -18204 still pixel 0, -18203 is pixel 1
    rows.append((-18204, -17527, 4005.0, 1000, 0, 0, 100, True))
    rows.append((-18203, -17527, 4006.0, 1000, 0, 0, 100, True))
    return rows


# expected image, by hand: {(iy, ix): count}
EXPECTED_PIXELS = {
    (20, 10): 5 + 2 + 1 + 1 + 2,  # 5 plain, PI 500/2000, RAWY 13, PATTERN 4, FLAG 0x10000/0x10001
    (300, 200): 4,  # 19999.999, 23000, 12005, 50999
    (0, 0): 2,  # -18283 and -18204
    (0, 1): 1,  # -18203
    (410, 402): 1,
}


def _write(tmp_path, *, shuffle=False, header=None):
    rows = _rows()
    if shuffle:
        rows = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    cols = list(zip(*rows))
    events = {
        "TIME": cols[2],
        "DETX": cols[0],
        "DETY": cols[1],
        "PI": cols[3],
        "PATTERN": cols[4],
        "FLAG": cols[5],
        "RAWY": cols[6],
        "CCDNR": [4] * len(rows),
    }
    ev = write_event_list(
        tmp_path / "P0123700101PNS003PIEVLI0000.FTZ",
        events,
        ccd_gtis=CCD_GTIS,
        header=header or event_header(tstart=1000.0, tstop=51000.0),
    )
    fb = _fbktsr(tmp_path / "P0123700101PNS003FBKTSR0000.FTZ")
    return ev, fb


def _expected_image():
    img = np.zeros(GRID_1X.shape, dtype=np.int32)
    for (iy, ix), n in EXPECTED_PIXELS.items():
        img[iy, ix] = n
    return img


def test_rows_annotations_consistent():
    # the per-row flags add up to the per-pixel table (guards the hand-made expectations)
    assert sum(r[7] for r in _rows()) == sum(EXPECTED_PIXELS.values())


@pytest.mark.parametrize("shuffle", [False, True])
def test_full_image_and_clean_exposure_exact(tmp_path, shuffle):
    ev, fb = _write(tmp_path, shuffle=shuffle)
    obs = process_event_list(ev, fb, config=EventsConfig(slice_lengths_ks=()))
    np.testing.assert_array_equal(obs.clean_gtis, EXPECTED_CLEAN)
    assert obs.clean_exposure_s == pytest.approx(EXPECTED_CLEAN_EXPOSURE, abs=1e-6)
    assert obs.flare_source == "FBKTSR"
    # CCD GTIs: the intersection loses CCD 5's 500 s hole: 49500 s
    assert obs.flare_fraction == pytest.approx(1 - 46090 / 49500)
    full = obs.full_image
    assert full is not None and len(obs.slices) == 1
    np.testing.assert_array_equal(full.counts, _expected_image())
    assert full.counts.dtype == np.int32 and full.counts.shape == (411, 403)
    assert full.exposure_s == pytest.approx(46090, abs=1e-6)
    assert obs.n_screened == sum(EXPECTED_PIXELS.values())
    assert full.rate[20, 10] == pytest.approx(11 / 46090)
    assert obs.obsid == "0123700101" and obs.expidstr == "S003"
    assert obs.filter == "Medium" and obs.pa_pnt == 60.0


def test_slices_by_hand(tmp_path):
    ev, fb = _write(tmp_path)
    obs = process_event_list(ev, fb, config=EventsConfig())
    # 46090 s -> 4 x 10, 2 x 20, 1 x 30, 1 x 40 ks (plus the full image)
    lengths = [(s.length_ks, s.n_slices, s.index) for s in obs.slices]
    assert lengths == [
        (None, 1, 0),
        (10.0, 4, 0), (10.0, 4, 1), (10.0, 4, 2), (10.0, 4, 3),
        (20.0, 2, 0), (20.0, 2, 1),
        (30.0, 1, 0),
        (40.0, 1, 0),
    ]  # fmt: skip
    ten = obs.images(10)
    # boundaries by hand: clean time 10000 -> t=11000; 20000 -> 24000 (19000 s in the first
    # GTI + 1000 s of the second); 30000 -> 34500; 40000 -> 44900
    np.testing.assert_allclose(ten[0].gtis, [[1000, 11000]])
    np.testing.assert_allclose(ten[1].gtis, [[11000, 20000], [23000, 24000]])
    np.testing.assert_allclose(ten[2].gtis, [[24000, 30000], [30500, 34500]])
    np.testing.assert_allclose(ten[3].gtis, [[34500, 40000], [40400, 44900]])
    for img in ten:
        assert img.exposure_s == pytest.approx(10000.0, abs=1e-6)
    np.testing.assert_allclose(obs.images(40)[0].gtis[-1], [40400, 44900])
    # pixel A (iy 20, ix 10): events at 1500, 2500, 3002, 3003, 3101, 3102, 3105, 3106, 5000
    # (slice 0), 15000 (slice 1), 25000 (slice 2)
    assert [int(i.counts[20, 10]) for i in ten] == [9, 1, 1, 0]
    # pixel B: 12005 and 19999.999 in slice 1, 23000 in slice 1, 50999 beyond 44900 (none)
    assert [int(i.counts[300, 200]) for i in ten] == [0, 3, 0, 0]
    twenty = obs.images(20)
    assert [int(i.counts[20, 10]) for i in twenty] == [10, 1]
    assert [int(i.counts[300, 200]) for i in twenty] == [3, 0]


def test_fits_roundtrip_and_headers(tmp_path):
    ev, fb = _write(tmp_path)
    obs = process_event_list(ev, fb, config=EventsConfig(slice_lengths_ks=(20,), grids=("1x", "2x")))
    img = obs.images(20)[1]
    out = write_image_fits(img, tmp_path / "out" / img.filename)
    assert out.name == "0123700101_20ks_2_1.fits"
    back = read_image_fits(out)
    np.testing.assert_array_equal(back.counts, img.counts)
    np.testing.assert_array_equal(back.mask, img.mask)
    np.testing.assert_array_equal(back.counts_2x, img.counts_2x)
    np.testing.assert_allclose(back.gtis, img.gtis)
    assert back.exposure_s == pytest.approx(20000.0)
    assert (back.length_ks, back.n_slices, back.index) == (20.0, 2, 1)
    assert back.band == (500, 2000) and back.expression == img.expression
    assert back.grid == GRID_1X
    with fits.open(out) as hdul:
        h = hdul[0].header
        assert h["OBS_ID"] == "0123700101" and h["EXPIDSTR"] == "S003"
        assert h["EXPOSURE"] == pytest.approx(20000.0)
        assert "PI in [500:2000]" in h["SLCTEXPR"]
        # evselect's physical WCS: pixel 1 centre at DETX -18243.5, LTV1 = 229.04375
        assert h["CRVAL1L"] == -18243.5 and h["CRVAL2L"] == -17487.5 and h["CDELT1L"] == 80
        assert h["LTV1"] == pytest.approx(229.04375) and h["LTM1_1"] == pytest.approx(0.0125)
        assert h["CTYPE1"] == "RA---TAN"
        assert {"MASK", "GTI", "COUNTS2X"} <= {x.name for x in hdul}
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0123700101_20ks_2_1.fits"]


def test_2x_grid_counts_sum_to_1x(tmp_path):
    ev, fb = _write(tmp_path)
    obs = process_event_list(ev, fb, config=EventsConfig(slice_lengths_ks=(), grids=("2x",)))
    img = obs.full_image
    c2 = img.counts_2x
    assert c2.shape == (822, 806)
    # every 1x pixel is 2x2 of 2x pixels
    np.testing.assert_array_equal(c2.reshape(411, 2, 403, 2).sum(axis=(1, 3)), img.counts)


def test_fallback_lightcurve_flares(tmp_path):
    # No FBKTSR: PATTERN==0, 10 < PI < 12 keV light curve in 100 s bins from 1000 s,
    # rate = counts / live time in the bin, good if <= 0.4 counts/s.
    ccd = {c: [[1000.0, 11000.0]] for c in range(1, 13)}
    ccd[3] = [[1000.0, 5050.0], [5120.0, 11000.0]]  # hole 5050-5120 inside bin 5000-5100
    t, pi, pat = [], [], []

    def burst(t0, n, width=100.0, p=11000, pattern=0):
        t.extend(np.linspace(t0, t0 + width, n, endpoint=False) + 0.25)
        pi.extend([p] * n)
        pat.extend([pattern] * n)

    burst(2000, 40)  # rate exactly 0.4 -> good
    burst(2100, 41)  # 0.41 -> flare
    burst(3000, 200, p=12000)  # PI 12000 is not < 12000: not in the light curve
    burst(3100, 200, pattern=1)  # not single events
    burst(3200, 100, p=10000)  # PI 10000 is not > 10000
    burst(5000, 25, width=50.0)  # 25 counts in the 50 s live part of bin 5000-5100: 0.5 -> flare
    burst(5100, 30, width=80.0, p=11999)  # bin 5100-5200 live 80 s (5120-5200): 30/80 < 0.4
    burst(8000, 100)  # 1 count/s -> flare
    order = np.argsort(t)
    n = len(t)
    events = {
        "TIME": np.asarray(t)[order],
        "DETX": np.zeros(n),
        "DETY": np.zeros(n),
        "PI": np.asarray(pi)[order],
        "PATTERN": np.asarray(pat)[order],
        "FLAG": np.zeros(n),
        "RAWY": np.full(n, 100),
    }
    ev = write_event_list(tmp_path / "ev.fits", events, ccd_gtis=ccd)
    obs = process_event_list(ev, None, config=EventsConfig(slice_lengths_ks=()))
    assert obs.flare_source == "events"
    expected = [[1000, 2100], [2200, 5000], [5120, 8000], [8100, 11000]]
    np.testing.assert_allclose(obs.clean_gtis, expected)
    assert obs.clean_exposure_s == pytest.approx(1100 + 2800 + 2880 + 2900)
    # a higher threshold keeps the 0.41 and 0.5 bins but not 1.0
    obs2 = process_event_list(ev, None, config=EventsConfig(slice_lengths_ks=(), flare_threshold=0.6))
    np.testing.assert_allclose(obs2.clean_gtis, [[1000, 5050], [5120, 8000], [8100, 11000]])


def test_read_event_list_columns_and_sorting(tmp_path):
    ev, _ = _write(tmp_path, shuffle=True)
    el = read_event_list(ev, columns=["detx", "PI"])
    assert set(el.columns) == {"TIME", "DETX", "PI"}
    assert np.all(np.diff(el["TIME"]) >= 0)
    assert el["DETX"].dtype.isnative and el["DETX"].dtype == np.int16
    np.testing.assert_array_equal(el.gtis, [[1000, 30000], [30500, 51000]])
    assert set(el.ccd_gtis) == set(range(1, 13))


def test_make_slices_unit():
    gtis = np.array([[0.0, 25000.0], [30000.0, 45000.0]])
    sl = make_slices(gtis, lengths_ks=(10, 20, 50))
    # 40 ks clean: 4 x 10, 2 x 20, none of 50
    assert [(s.length_ks, s.index) for s in sl] == [(10, 0), (10, 1), (10, 2), (10, 3), (20, 0), (20, 1)]
    np.testing.assert_allclose(sl[2].gtis, [[20000, 25000], [30000, 35000]])
    np.testing.assert_allclose(sl[5].gtis, [[20000, 25000], [30000, 45000]])
    assert make_slices(np.zeros((0, 2))) == []
    assert make_slices(np.array([[0.0, 9999.0]])) == []
