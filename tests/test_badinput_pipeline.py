"""Bad-input corpus served by the local archive and run through the whole pipeline.

Every observation of the archive is public pn full frame, so the selection takes them all;
each one's PIEVLI (or FBKTSR) is damaged in one way: truncated, garbled, missing columns or
extensions, wrong instrument or mode, no events, zero or negative exposure, NaN/Inf times,
GTIs out of order, another observation's file. The batch must go on: the good observations
are complete, each bad one is recorded in the runs catalog as not successful with a reason
that names the problem, and nothing of a bad one is in the catalogs or the store.

The corpus is generated (from the local archive's minimal products) so no binary fixtures
are kept in the repository; the same damage applied straight to the events stage is tested
in ``test_events_errors.py``.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from test_reliability_support import check_store_integrity, pipeline_dict, run_in_process, runs_rows
from xsa_enhance.standin import LocalArchive
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore

SEED = 61


def _rewrite(path: Path, edit) -> None:
    """Apply ``edit(hdul) -> HDUList`` to a gzipped FITS file in place."""
    with fits.open(io.BytesIO(gzip.decompress(path.read_bytes()))) as hdul:
        hdul.readall()
        new = edit(hdul)
        buf = io.BytesIO()
        new.writeto(buf, output_verify="silentfix")
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def _events_table(hdul, **cols) -> fits.BinTableHDU:
    ev = hdul["EVENTS"]
    data = {c.name: np.array(ev.data[c.name]) for c in ev.columns}
    data.update(cols)
    n = len(next(iter(data.values())))
    columns = [fits.Column(name=c.name, format=c.format, unit=c.unit, array=data[c.name])
               for c in ev.columns if c.name in data and len(data[c.name]) == n]
    out = fits.BinTableHDU.from_columns(columns, name="EVENTS", header=ev.header.copy())
    return out


def _replace(hdul, name, hdu):
    return fits.HDUList([hdu if h.name == name else h for h in hdul])


def _truncate(p):
    p.write_bytes(p.read_bytes()[: int(0.6 * p.stat().st_size)])


def _garble(p):
    raw = bytearray(gzip.decompress(p.read_bytes()))
    rng = np.random.default_rng(7)
    raw[2880:2880 + 1600] = rng.integers(0, 256, 1600, dtype=np.uint8).tobytes()
    p.write_bytes(gzip.compress(bytes(raw), mtime=0))


def _drop_column(p):
    def edit(hdul):
        ev = hdul["EVENTS"]
        cols = [c for c in ev.columns if c.name != "PATTERN"]
        return _replace(hdul, "EVENTS", fits.BinTableHDU.from_columns(
            cols, name="EVENTS", header=ev.header.copy()))
    _rewrite(p, edit)


def _drop_gtis(p):
    _rewrite(p, lambda h: fits.HDUList([x for x in h if not x.name.startswith("STDGTI")]))


def _drop_events(p):
    def edit(hdul):
        ev = hdul["EVENTS"].copy()
        ev.name = "SOMETHING"
        return _replace(hdul, "EVENTS", ev)
    _rewrite(p, edit)


def _header(**cards):
    def mutate(p):
        def edit(hdul):
            for h in hdul[:2]:
                for k, v in cards.items():
                    h.header[k] = v
            return hdul
        _rewrite(p, edit)
    return mutate


def _empty(p):
    def edit(hdul):
        ev = hdul["EVENTS"]
        return _replace(hdul, "EVENTS", fits.BinTableHDU.from_columns(
            [fits.Column(name=c.name, format=c.format, array=np.array(ev.data[c.name])[:0])
             for c in ev.columns], name="EVENTS", header=ev.header.copy()))
    _rewrite(p, edit)


def _gtis(make):
    def mutate(p):
        def edit(hdul):
            out = []
            for h in hdul:
                if h.name.startswith("STDGTI"):
                    start, stop = float(h.data["START"][0]), float(h.data["STOP"][0])
                    s, e = make(start, stop)
                    h = fits.BinTableHDU.from_columns(
                        [fits.Column(name="START", format="D", array=s),
                         fits.Column(name="STOP", format="D", array=e)], name=h.name)
                out.append(h)
            return fits.HDUList(out)
        _rewrite(p, edit)
    return mutate


def _time_value(value):
    def mutate(p):
        def edit(hdul):
            t = np.array(hdul["EVENTS"].data["TIME"], dtype="f8")
            t[len(t) // 2] = value
            return _replace(hdul, "EVENTS", _events_table(hdul, TIME=t))
        _rewrite(p, edit)
    return mutate


def _nan_rates(p):
    def edit(hdul):
        hdul["RATE"].data["RATE"][:] = np.nan
        return hdul
    _rewrite(p, edit)


#: name -> (which product, damage, accepted outcomes, reason fragments (any of them))
CORPUS = {
    "good": ("PIEVLI", None, {"ok"}, [""]),
    "truncated": ("PIEVLI", _truncate, {"failed"}, ["not a readable FITS file", "truncated"]),
    "garbled-header": ("PIEVLI", _garble, {"failed"}, ["not a readable FITS file", "corrupt"]),
    "missing-column": ("PIEVLI", _drop_column, {"failed"}, ["PATTERN"]),
    "missing-gti-extensions": ("PIEVLI", _drop_gtis, {"failed"}, ["STDGTI"]),
    "missing-events-extension": ("PIEVLI", _drop_events, {"failed"}, ["no EVENTS extension"]),
    "wrong-instrument": ("PIEVLI", _header(INSTRUME="EMOS1"), {"failed"}, ["INSTRUME=EMOS1"]),
    "timing-mode": ("PIEVLI", _header(DATAMODE="TIMING"), {"failed"}, ["imaging-mode", "TIMING"]),
    "no-events": ("PIEVLI", _empty, {"failed"}, ["empty"]),
    "zero-exposure": ("PIEVLI", _gtis(lambda a, b: ([a], [a])), {"failed", "skipped"},
                      ["GTIs are empty", "exposure 0.0 ks"]),
    "negative-exposure": ("PIEVLI", _gtis(lambda a, b: ([b], [a])), {"failed"}, ["before START"]),
    "gtis-out-of-order": ("PIEVLI", _gtis(lambda a, b: ([a + 0.6 * (b - a), a],
                                                        [b, a + 0.5 * (b - a)])),
                          {"failed"}, ["out of order"]),
    "nan-time": ("PIEVLI", _time_value(np.nan), {"failed"}, ["non-finite TIME"]),
    "inf-time": ("PIEVLI", _time_value(np.inf), {"failed"}, ["non-finite TIME"]),
    "another-observation": ("PIEVLI", _header(OBS_ID="0123456789"), {"failed"}, ["OBS_ID is 0123456789"]),
    "fbktsr-all-nan": ("FBKTSR", _nan_rates, {"failed", "skipped"}, ["RATE", "NaN", "exposure 0.0 ks",
                                                                       "light curve"]),
}
NAMES = list(CORPUS)


def corpus_products(out_dir: Path, obs) -> list[Path]:
    """Minimal pn products, damaged as :data:`CORPUS` says for this observation's index."""
    files = minimal_products(out_dir, obs)
    index = int(obs.obsid[4:8]) - 1
    product, damage, _, _ = CORPUS[NAMES[index]]
    if damage is not None:
        for f in files:
            if product in f.name:
                damage(f)
    return files


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    url = tmp_path_factory.mktemp("corpus") / "store.zarr"
    with LocalArchive(tmp_path_factory.mktemp("corpus-archive"), kinds=["normal"] * len(NAMES),
                      seed=SEED, producer=corpus_products) as la:
        names = {o.obsid: NAMES[int(o.obsid[4:8]) - 1] for o in la.observations}
        summary = run_in_process(pipeline_dict(la, url, [], retries=0))
    return url, names, summary


@pytest.mark.parametrize("name", NAMES)
def test_each_bad_input_is_recorded_with_its_reason(name, corpus_run):
    url, names, summary = corpus_run
    obsid = next(o for o, n in names.items() if n == name)
    _, _, accepted, fragments = CORPUS[name]
    outcome = next(o for o in summary.outcomes if o["obsid"] == obsid)
    row = runs_rows(url, summary.run_id)[obsid]
    assert outcome["status"] in accepted, (name, outcome)
    assert row["status"] == outcome["status"]
    assert any(f in row["reason"] for f in fragments), (name, row["reason"])
    store = ProductStore(url, mode="r")
    in_catalog = obsid in set(store.catalog("observations").column("obsid").tolist())
    if outcome["status"] == "ok":
        assert in_catalog and row["n_slices"] > 0
    elif outcome["status"] == "failed":
        # nothing of a failed observation is recorded as a success
        assert not in_catalog and obsid not in store.list_observations()
        assert obsid not in set(store.catalog("slices").column("obsid").tolist())
    else:  # skipped: the observation is described, but has no usable slice
        slices = store.catalog("slices").read()
        assert not any((slices["obsid"] == obsid) & (slices["length_ks"] > 0))


def test_the_batch_went_on(corpus_run):
    url, names, summary = corpus_run
    assert len(summary.outcomes) == len(NAMES)
    store = ProductStore(url, mode="r")
    assert store.run_log[-1]["status"] == "finished"
    obs = store.catalog("observations").read()
    assert [str(r["obsid"]) for r in obs if r["status"] == "ok"] == [
        o for o, n in names.items() if n == "good"]
    assert {names[str(r["obsid"])] for r in obs if r["status"] != "ok"} <= {
        n for n, c in CORPUS.items() if "skipped" in c[2]}
    check_store_integrity(url)


def test_reasons_are_one_line_and_name_the_product(corpus_run):
    """Every refusal is one line and says which product (or what exposure) was the problem."""
    url, names, summary = corpus_run
    rows = runs_rows(url, summary.run_id)
    for obsid, name in sorted(names.items()):
        row = rows[obsid]
        reason = str(row["reason"])
        assert "\n" not in reason and "Traceback" not in reason, (name, reason)
        if row["status"] == "failed":
            assert "PIEVLI" in reason or "FBKTSR" in reason, (name, reason)
        elif row["status"] == "skipped":
            assert "clean exposure" in reason, (name, reason)
