"""The events stage on a simulated observation (xsa_enhance.simulate), checked independently."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from xsa_enhance.events import EventsConfig, process_event_list
from xsa_enhance.instrument.grid import GRID_1X

pytestmark = pytest.mark.filterwarnings("ignore::astropy.units.UnitsWarning")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from xsa_enhance.simulate.observation import simulate_observation

    out = tmp_path_factory.mktemp("sim")
    return simulate_observation(out, obsid="0000000042", exposure_ks=30, seed=1)


def _independent_image(path, gtis):
    """astropy Table + numpy masks + histogram2d: the plain way to make the image."""
    t = Table.read(path, hdu="EVENTS")
    time = np.asarray(t["TIME"], float)
    in_gti = np.zeros(len(t), bool)
    for a, b in gtis:
        in_gti |= (time >= a) & (time < b)
    flag = np.asarray(t["FLAG"])
    pi = np.asarray(t["PI"])
    m = (
        (pi > 300) & (np.asarray(t["RAWY"]) > 12) & (np.asarray(t["PATTERN"]) <= 4)
        & ((flag == 0) | ((flag & 0x10000) != 0)) & (pi >= 500) & (pi <= 2000) & in_gti
    )  # fmt: skip
    h, _, _ = np.histogram2d(
        np.asarray(t["DETY"], float)[m], np.asarray(t["DETX"], float)[m], bins=[GRID_1X.y_edges, GRID_1X.x_edges]
    )
    return h.astype(np.int64)


def test_simulated_observation_end_to_end(simulated):
    sim = simulated
    obs = process_event_list(sim.pievli, sim.fbktsr, config=EventsConfig(slice_lengths_ks=(5, 10)))
    assert obs.obsid == "0000000042" and obs.flare_source == "FBKTSR"
    assert obs.ra_pnt == pytest.approx(sim.ra_pnt) and obs.pa_pnt == pytest.approx(sim.pa_pnt)
    total = sum(b - a for a, b in sim.gtis)
    assert 0 < obs.clean_exposure_s <= total
    # clearly flaring times (rate well above the cut) are never clean
    for f in sim.flares:
        if f.peak_rate > 2 * (sim.flcutthr or 0.4):
            lo, hi = f.t_peak - 0.5 * f.width_s, f.t_peak + 0.5 * f.width_s
            for a, b in obs.clean_gtis:
                assert b <= lo or a >= hi, (f, a, b)
    # the whole clean exposure image, compared with the plain implementation
    np.testing.assert_array_equal(obs.full_image.counts, _independent_image(sim.pievli, obs.clean_gtis))
    # slices of one length add up to the image of their union
    for length in (5.0, 10.0):
        group = obs.images(length)
        assert len(group) == int(obs.clean_exposure_s // (length * 1000))
        union = np.concatenate([s.gtis for s in group])
        np.testing.assert_array_equal(
            sum(s.counts.astype(np.int64) for s in group), _independent_image(sim.pievli, union)
        )
        for s in group:
            assert s.exposure_s == pytest.approx(length * 1000, abs=1e-6)
    # most screened counts fall on the detector mask (the rest are corner events and edges)
    full = obs.full_image
    assert full.counts[full.mask].sum() > 0.9 * full.total_counts


def test_fbktsr_and_event_lightcurve_agree(simulated):
    sim = simulated
    a = process_event_list(sim.pievli, sim.fbktsr, config=EventsConfig(slice_lengths_ks=()))
    b = process_event_list(sim.pievli, None, config=EventsConfig(slice_lengths_ks=(), flare_threshold=sim.flcutthr))
    assert b.flare_source == "events"
    assert b.clean_exposure_s == pytest.approx(a.clean_exposure_s, rel=0.15)


def test_sky_wcs_finds_simulated_sources(simulated, tmp_path):
    """The exported image's sky WCS maps the injected AGN's DET positions to their RA/Dec."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from xsa_enhance.events import write_image_fits

    sim = simulated
    if len(sim.agn_detx) == 0:
        pytest.skip("no AGN injected")
    obs = process_event_list(sim.pievli, sim.fbktsr, config=EventsConfig(slice_lengths_ks=()))
    path = write_image_fits(obs.full_image, tmp_path / "full.fits")
    w = WCS(fits.getheader(path))
    px = (np.asarray(sim.agn_detx) - GRID_1X.x_edge0) / GRID_1X.binsize - 0.5  # 0-based pixel
    py = (np.asarray(sim.agn_dety) - GRID_1X.y_edge0) / GRID_1X.binsize - 0.5
    ra, dec = w.pixel_to_world_values(px, py)
    sep = np.hypot((ra - sim.agn_ra) * np.cos(np.deg2rad(sim.agn_dec)), dec - sim.agn_dec) * 3600
    assert np.max(sep) < 0.1, sep  # arcsec
