"""Event-level simulated observations: PPS file structure, component rates, flares."""

import gzip
import hashlib

import numpy as np
import pytest
from astropy.io import fits

from xsa_enhance.errors import ConfigError
from xsa_enhance.instrument import geometry as geo
from xsa_enhance.instrument.background import Flare
from xsa_enhance.instrument.psf import PSF_HANDBOOK
from xsa_enhance.instrument.vignetting import vignetting
from xsa_enhance.simulate.observation import SourceMix, simulate_observation

COLUMNS = {
    "TIME": "D", "RAWX": "I", "RAWY": "I", "DETX": "I", "DETY": "I", "X": "J", "Y": "J",
    "PHA": "I", "PI": "I", "FLAG": "J", "PATTERN": "B", "PAT_ID": "I", "PAT_SEQ": "B",
    "CCDNR": "B",
}


@pytest.fixture(scope="module")
def flared(tmp_path_factory):
    out = tmp_path_factory.mktemp("obs")
    # 2010-01-01T00:00:00 UTC = MJD 55197 UTC; TT - UTC = 66.184 s then
    t0 = (55197 - 50814) * 86400 + 66.184
    flares = (Flare(t0 + 6000.0, 400.0, 4.0), Flare(t0 + 15000.0, 800.0, 1.5))
    obs = simulate_observation(
        out, obsid="0123700101", exposure_ks=20, seed=11, date_obs="2010-01-01T00:00:00",
        ra=83.6, dec=22.0, pa=120.0, sources=SourceMix(extended="cluster"), flare_list=flares,
    )
    return obs


def test_pps_file_names_and_gzip(flared) -> None:
    assert flared.pievli.name == "P0123700101PNS003PIEVLI0000.FTZ"
    assert flared.fbktsr.name == "P0123700101PNS003FBKTSR0000.FTZ"
    for p in (flared.pievli, flared.fbktsr):
        with open(p, "rb") as fh:
            assert fh.read(2) == b"\x1f\x8b"
        fits.open(gzip.open(p)).close()


def test_events_extension_structure(flared) -> None:
    with fits.open(flared.pievli) as h:
        names = [x.name for x in h]
        assert names[:2] == ["PRIMARY", "EVENTS"]
        assert [f"STDGTI{i:02d}" for i in range(1, 13)] == names[2:14]
        ev = h["EVENTS"]
        hdr = ev.header
        cols = ev.columns
        assert cols.names == list(COLUMNS)
        for c in cols:
            assert c.format == COLUMNS[c.name], c.name
        i_x = cols.names.index("X") + 1
        assert hdr[f"TNULL{i_x}"] == -99999999
        i_pi = cols.names.index("PI") + 1
        assert (hdr[f"TLMIN{i_pi}"], hdr[f"TLMAX{i_pi}"]) == (0, 32767)
        for k in ("DETX", "DETY", "X", "Y", "RAWX", "RAWY"):
            j = cols.names.index(k) + 1
            assert f"TLMIN{j}" in hdr and f"TLMAX{j}" in hdr
        for k, v in {"INSTRUME": "EPN", "DATAMODE": "IMAGING", "SUBMODE": "PrimeFullWindow",
                     "FILTER": "Medium", "OBS_ID": "0123700101", "EXP_ID": "0123700101003",
                     "EXPIDSTR": "S003", "TIMESYS": "TT", "MJDREF": 50814.0,
                     "REFXCTYP": "RA---TAN", "REFYCTYP": "DEC--TAN", "REFXCRPX": 25921,
                     "REFYCRPX": 25921, "REFXLMAX": 51840,
                     "DATE-OBS": "2010-01-01T00:00:00"}.items():
            assert hdr[k] == v, k
        assert hdr["REFXCDLT"] == pytest.approx(-1.3888889e-5)
        assert hdr["REFYCDLT"] == pytest.approx(1.3888889e-5)
        assert hdr["REFXCRVL"] == pytest.approx(83.6) and hdr["RA_PNT"] == pytest.approx(83.6)
        assert hdr["PA_PNT"] == pytest.approx(120.0)
        assert hdr["TSTOP"] - hdr["TSTART"] == pytest.approx(20000.0)
        assert hdr["ONTIME"] == pytest.approx(20000.0)
        assert hdr["LIVETIME"] <= hdr["ONTIME"]
        # 2010-01-01T00:00:00 UTC = MJD 55197; TT - UTC = 66.184 s then
        assert hdr["TSTART"] == pytest.approx((55197 - 50814) * 86400 + 66.184, abs=1.0)
        d = ev.data
        assert len(d) == flared.n_events > 10000
        assert np.all(np.diff(d["TIME"]) >= 0)
        assert d["TIME"].min() >= hdr["TSTART"] and d["TIME"].max() <= hdr["TSTOP"]
        assert d["RAWX"].min() >= 1 and d["RAWX"].max() <= 64
        assert d["RAWY"].min() >= 13 and d["RAWY"].max() <= 200
        assert set(np.unique(d["CCDNR"])) == set(range(1, 13))
        assert d["PI"].min() >= 150 and d["PI"].max() <= 15000
        assert d["PATTERN"].max() <= 12
        # pattern mix: singles ~70 %, doubles ~25 %, rest a few %
        p = np.bincount(d["PATTERN"], minlength=13) / len(d)
        assert 0.6 < p[0] < 0.8 and 0.18 < p[1:5].sum() < 0.32 and p[5:].sum() < 0.12
        # flags: good events, border pixels, corner events (outside the FOV circle)
        corner = (d["FLAG"] & 0x10000) != 0
        assert 0.95 > (d["FLAG"] == 0).mean() > 0.8
        assert corner.any()
        assert not geo.in_fov(d["DETX"][corner], d["DETY"][corner]).any()
        assert geo.in_fov(d["DETX"][~corner], d["DETY"][~corner]).all()
        # RAW and DET agree with the geometry
        c, rx, ry = geo.det_to_raw(d["DETX"][:5000].astype(float), d["DETY"][:5000].astype(float))
        ok = c > 0
        assert (c[ok] == d["CCDNR"][:5000][ok]).mean() > 0.99
        assert (rx[ok] == d["RAWX"][:5000][ok]).mean() > 0.97
        # sky X/Y consistent with DET and PA
        x, y = geo.det_to_sky(d["DETX"].astype(float), d["DETY"].astype(float), pa_deg=120.0)
        assert np.abs(x - d["X"]).max() <= 1.5 and np.abs(y - d["Y"]).max() <= 1.5
        gti = h["STDGTI04"].data
        assert gti.columns.names == ["START", "STOP"]
        assert gti["START"][0] == hdr["TSTART"] and gti["STOP"][-1] == hdr["TSTOP"]


def test_fbktsr_structure_and_flares(flared) -> None:
    with fits.open(flared.fbktsr) as h:
        rate = h["RATE"]
        assert rate.columns.names == ["TIME", "RATE", "ERROR", "FRACEXP"]
        hdr = rate.header
        assert hdr["HDUCLAS1"] == "LIGHTCURVE"
        assert hdr["TIMEDEL"] == 100.0
        thr = hdr["FLCUTTHR"]
        lc = rate.data
    assert len(flared.flares) >= 1
    t = lc["TIME"]
    r = lc["RATE"]
    in_flare = np.zeros(t.size, bool)
    for f in flared.flares:
        in_flare |= np.abs(t - f.t_peak) < f.width_s
    quiet = np.ones(t.size, bool)
    for a, b in flared.flare_intervals:
        quiet &= (t < a - 200) | (t > b + 200)
    assert quiet.sum() > 20 and in_flare.sum() >= 2
    # light curve rises during the flares, threshold separates them from quiet time
    assert r[in_flare].mean() > 3 * r[quiet].mean()
    assert np.median(r[quiet]) < thr
    assert r[in_flare].max() > thr
    # the quiet level is the expected background rate (+ a little from the sources)
    assert r[quiet].mean() == pytest.approx(flared.quiet_fbk_rate, rel=0.2)


def test_random_flares_rise_above_threshold(tmp_path) -> None:
    o = simulate_observation(tmp_path, obsid="0000000801", exposure_ks=30, seed=21,
                             sources=SourceMix(agn=False, extended=None))
    assert len(o.flares) >= 1
    with fits.open(o.fbktsr) as h:
        lc = h["RATE"].data
        thr = h["RATE"].header["FLCUTTHR"]
    peaks = [lc["RATE"][np.abs(lc["TIME"] - f.t_peak) < 150].mean() for f in o.flares]
    assert max(peaks) > thr
    assert np.nanmin(lc["RATE"]) < thr


def test_fbktsr_is_computed_from_the_events(flared) -> None:
    with fits.open(flared.pievli) as h:
        d = h["EVENTS"].data
    with fits.open(flared.fbktsr) as h:
        lc = h["RATE"].data
    sel = (d["PI"] >= 10000) & (d["PI"] < 12000) & (d["PATTERN"] == 0) & (d["FLAG"] == 0)
    edges = np.append(lc["TIME"] - 50.0, lc["TIME"][-1] + 50.0)
    counts, _ = np.histogram(d["TIME"][sel], bins=edges)
    np.testing.assert_allclose(lc["RATE"] * 100.0 * lc["FRACEXP"], counts, atol=1.0)


def test_counts_of_each_component_match_rates(tmp_path) -> None:
    # particle only, then sky only, then one point source: screened 0.5-2 keV counts
    def screened(obs, region=None):
        with fits.open(obs.pievli) as h:
            d = h["EVENTS"].data
        k = (d["FLAG"] == 0) & (d["PATTERN"] <= 4) & (d["PI"] >= 500) & (d["PI"] < 2000)
        if region is not None:
            k &= region(d["DETX"].astype(float), d["DETY"].astype(float))
        return int(k.sum())

    # good area / vignetting-weighted good area from a fine sampling of the geometry
    g = np.arange(-19000, 16000, 25.0)
    xx, yy = np.meshgrid(g, g)
    c, rx, ry = geo.det_to_raw(xx.ravel(), yy.ravel())
    good = (c > 0) & (rx >= 2) & (rx <= 63) & (ry >= 13) & (ry <= 199)
    good &= geo.in_fov(xx.ravel(), yy.ravel())
    cell = (25 * 0.05 / 60.0) ** 2
    area = good.sum() * cell
    theta = geo.off_axis_arcmin(xx.ravel()[good], yy.ravel()[good])
    varea = vignetting(theta).sum() * cell

    def check(n, expected):
        assert abs(n - expected) < 4 * np.sqrt(expected) + 0.01 * expected, (n, expected)

    mix = SourceMix(agn=False, extended=None, particle_rate=1.1e-3, sky_rate=0.0)
    o = simulate_observation(tmp_path / "p", obsid="0000000201", exposure_ks=10, seed=1,
                             flares=False, with_fbktsr=False, sources=mix, out_of_time=False)
    check(screened(o), 1.1e-3 * area * o.ontime * 0.998)
    with fits.open(o.pievli) as h:
        d = h["EVENTS"].data
    fbk = (d["PI"] >= 10000) & (d["PI"] < 12000) & (d["PATTERN"] == 0) & (d["FLAG"] == 0)
    check(int(fbk.sum()), o.quiet_fbk_rate * o.ontime * 0.998)
    mix = SourceMix(agn=False, extended=None, particle_rate=0.0, sky_rate=1.4e-3)
    o = simulate_observation(tmp_path / "s", obsid="0000000202", exposure_ks=10, seed=2,
                             flares=False, with_fbktsr=False, sources=mix, out_of_time=False)
    check(screened(o), 1.4e-3 * varea * o.ontime * 0.998)
    # a 0.05 counts/s source 4' off axis, counted within 60": rate * vignetting * EE(60")
    sx, sy = geo.OPTICAL_AXIS_DET[0] + 4 * 1200.0, geo.OPTICAL_AXIS_DET[1] + 8000.0
    th = float(geo.off_axis_arcmin(sx, sy))
    mix = SourceMix(agn=False, extended=None, particle_rate=0.0, sky_rate=0.0,
                    point_sources=((sx, sy, 0.05),))
    o = simulate_observation(tmp_path / "a", obsid="0000000203", exposure_ks=20, seed=3,
                             flares=False, with_fbktsr=False, sources=mix, out_of_time=False)
    n = screened(o, lambda x, y: np.hypot(x - sx, y - sy) < 1200.0)
    ee = float(np.mean([PSF_HANDBOOK.encircled_energy(60.0, energy_kev=e, theta_arcmin=th)
                        for e in (0.6, 0.9, 1.2, 1.6)]))
    check(n, 0.05 * float(vignetting(th)) * o.ontime * ee * 0.998)


def test_point_source_events_follow_the_psf(tmp_path) -> None:
    sx, sy = 480.0, 6000.0  # well inside CCD 4
    mix = SourceMix(agn=False, extended=None, particle_rate=0.0, sky_rate=0.0,
                    point_sources=((sx, sy, 2.0),))
    o = simulate_observation(tmp_path, obsid="0000000301", exposure_ks=20, seed=4,
                             flares=False, with_fbktsr=False, sources=mix, out_of_time=False)
    with fits.open(o.pievli) as h:
        d = h["EVENTS"].data
    r = np.hypot(d["DETX"] - sx, d["DETY"] - sy) * 0.05
    e = d["PI"] / 1000.0
    th = float(geo.off_axis_arcmin(sx, sy))
    inner = r < 100.0
    for rad in (6.0, 10.0, 20.0, 40.0):
        meas = (r < rad).sum() / inner.sum()
        # expected: per-event energies through the analytic EE, normalised the same way
        es = e[inner][::50]
        exp = np.mean([PSF_HANDBOOK.encircled_energy(rad, energy_kev=x, theta_arcmin=th)
                       / PSF_HANDBOOK.encircled_energy(100.0, energy_kev=x, theta_arcmin=th)
                       for x in es])
        assert meas == pytest.approx(exp, rel=0.05)


def test_same_seed_same_bytes(tmp_path) -> None:
    kw = dict(obsid="0000000401", exposure_ks=2, seed=9, sources=SourceMix(extended=None))
    a = simulate_observation(tmp_path / "a", **kw)
    b = simulate_observation(tmp_path / "b", **kw)
    c = simulate_observation(tmp_path / "c", **{**kw, "seed": 10})
    h = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert h(a.pievli) == h(b.pievli) and h(a.fbktsr) == h(b.fbktsr)
    assert h(a.pievli) != h(c.pievli)


def test_other_modes_and_mos_are_writable(tmp_path) -> None:
    sw = simulate_observation(tmp_path / "sw", obsid="0000000501", exposure_ks=2, seed=1,
                              submode="PrimeSmallWindow", sources=SourceMix(extended=None))
    with fits.open(sw.pievli) as h:
        assert h["EVENTS"].header["SUBMODE"] == "PrimeSmallWindow"
        assert set(np.unique(h["EVENTS"].data["CCDNR"])) <= {4}
    tm = simulate_observation(tmp_path / "tm", obsid="0000000502", exposure_ks=2, seed=1,
                              submode="FastTiming", sources=SourceMix(extended=None))
    assert tm.fbktsr is None
    with fits.open(tm.pievli) as h:
        assert h["EVENTS"].header["DATAMODE"] == "TIMING"
    mos = simulate_observation(tmp_path / "m", obsid="0000000503", exposure_ks=2, seed=1,
                               instrument="EMOS1", sources=SourceMix(extended=None))
    assert mos.pievli.name == "P0000000503M1S001MIEVLI0000.FTZ"
    with fits.open(mos.pievli) as h:
        assert h[0].header["INSTRUME"] == "EMOS1"


def test_data_gap_gives_nan_bins_and_split_gtis(tmp_path) -> None:
    o = simulate_observation(tmp_path, obsid="0000000601", exposure_ks=10, seed=5,
                             data_gap=True, flares=False, sources=SourceMix(extended=None))
    assert len(o.gtis) == 2
    with fits.open(o.fbktsr) as h:
        lc = h["RATE"].data
    dead = lc["FRACEXP"] == 0
    assert dead.any() and np.isnan(lc["RATE"][dead]).all()
    assert np.isfinite(lc["RATE"][~dead]).all()
    with fits.open(o.pievli) as h:
        t = h["EVENTS"].data["TIME"]
    (a0, a1), (b0, b1) = o.gtis
    assert not ((t >= a1) & (t < b0)).any()


def test_explicit_flares(tmp_path) -> None:
    o = simulate_observation(tmp_path / "q", obsid="0000000701", exposure_ks=10, seed=6,
                             flares=False, sources=SourceMix(agn=False, extended=None))
    t0 = o.tstart
    f = Flare(t_peak=t0 + 5000.0, width_s=500.0, peak_rate=5.0)
    o2 = simulate_observation(tmp_path / "f", obsid="0000000701", exposure_ks=10, seed=6,
                              flares=True, flare_list=(f,),
                              sources=SourceMix(agn=False, extended=None))
    with fits.open(o2.fbktsr) as h:
        lc = h["RATE"].data
    peak = lc["RATE"][np.abs(lc["TIME"] - f.t_peak) < 100].mean()
    assert peak == pytest.approx(5.0 + o2.quiet_fbk_rate, rel=0.15)
    assert o2.n_events > o.n_events


@pytest.mark.parametrize("bad", ["123", "01237001011", "../../etc/x", "012370010a"])
def test_invalid_obsid_is_rejected(tmp_path, bad) -> None:
    with pytest.raises(ConfigError, match="10 digits"):
        simulate_observation(tmp_path, obsid=bad, exposure_ks=1, seed=1)
    assert not any(tmp_path.iterdir())


def test_bad_options_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="SUBMODE"):
        simulate_observation(tmp_path, obsid="0000000001", exposure_ks=1, seed=1, submode="X")
    with pytest.raises(ConfigError, match="exposure"):
        simulate_observation(tmp_path, obsid="0000000001", exposure_ks=-1, seed=1)
    with pytest.raises(ConfigError, match="instrument"):
        simulate_observation(tmp_path, obsid="0000000001", exposure_ks=1, seed=1, instrument="ACIS")
