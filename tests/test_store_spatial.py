"""HEALPix spatial index of the sky catalogs: indexed cone queries return exactly the rows of
a brute-force numpy haversine cut (random catalogs, cones across RA=0/360 and at the poles),
with and without an index, with unindexed tails, after appends, merges and rewrites."""

from __future__ import annotations

import numpy as np
import pytest

from xsa_enhance.store import CATALOG_SCHEMAS, ProductStore, spatial
from xsa_enhance.store.query import query_catalog


def _haversine_deg(ra0, dec0, ra, dec):
    """Great-circle distance (haversine), independent of astropy and of the index."""
    ra0, dec0, ra, dec = map(np.radians, (ra0, dec0, ra, dec))
    h = np.sin((dec - dec0) / 2) ** 2 + np.cos(dec0) * np.cos(dec) * np.sin((ra - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _brute(ra, dec, ra0, dec0, radius):
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    sep = np.full(len(ra), np.inf)
    sep[ok] = _haversine_deg(ra0, dec0, ra[ok], dec[ok])
    return np.nonzero(sep <= radius)[0]


def _append(store: ProductStore, ra: np.ndarray, dec: np.ndarray, *, index: bool = True) -> None:
    """Append rows (positions only, other columns their fill) to ``observations`` and publish
    them as a commit does; then extend the index like ``ProductStore.commit``."""
    cat = store.catalog("observations")
    n0, n1 = cat.nrows, cat.nrows + len(ra)
    for col in cat.columns:
        cat.group[col.name].resize((n1,))
    cat.group["ra_pnt"][n0:n1] = ra
    cat.group["dec_pnt"][n0:n1] = dec
    cat.group["obsid"][n0:n1] = np.array([f"{i:010d}" for i in range(n0, n1)], dtype=object)
    state = dict(store.root.attrs["catalogs"])
    state["observations"] = {**state["observations"], "nrows": n1}
    store.root.attrs["catalogs"] = state
    if index:
        spatial.update_index(store.catalog("observations"))


def _sky(rng, n):
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return ra, dec


def _clusters(rng, n):
    """Positions crowded near RA=0/360 and both poles, plus exact edge values."""
    k = n // 4
    ra = np.concatenate([rng.normal(0, 0.5, k) % 360, rng.uniform(0, 360, k),
                         rng.uniform(0, 360, k), rng.uniform(0, 360, n - 3 * k)])
    dec = np.concatenate([rng.normal(0, 0.5, k), 90 - rng.exponential(0.5, k),
                          -90 + rng.exponential(0.5, k),
                          np.degrees(np.arcsin(rng.uniform(-1, 1, n - 3 * k)))])
    ra[:6] = [0.0, 359.9999, 0.0, 123.0, 10.0, 20.0]
    dec[:6] = [0.0, 0.0, 90.0, -90.0, np.nan, 0.0]
    ra[5] = np.nan
    return ra, dec


@pytest.fixture(autouse=True)
def _always_index(monkeypatch):
    """Read the index whatever the cone covers (by default a cone covering much of a small
    test catalog is answered by the scan, which would leave the index path untested)."""
    monkeypatch.setattr(spatial, "_SCAN_RATIO", 0)


CONES = [
    (0.0, 0.0, 1.0), (359.8, 0.3, 0.7), (0.1, -0.2, 0.5), (180.0, 0.0, 2.0),  # across 0/360
    (0.0, 90.0, 1.0), (77.0, 89.7, 0.6), (250.0, -90.0, 0.8), (3.0, -89.9, 0.3),  # poles
    (10.0, 10.0, 1e-3), (45.0, 30.0, 10 / 3600), (300.0, -40.0, 15.0),
    (30.0, 60.0, 95.0), (200.0, -10.0, 180.0), (12.0, 34.0, 0.0),
]


@pytest.fixture(scope="module")
def sky_store(tmp_path_factory):
    rng = np.random.default_rng(17)
    store = ProductStore(tmp_path_factory.mktemp("spatial") / "store.zarr")
    ra1, dec1 = _clusters(rng, 40_000)
    ra2, dec2 = _sky(rng, 30_000)
    ra3, dec3 = _clusters(rng, 5_000)
    _append(store, ra1, dec1)
    _append(store, ra2, dec2)  # merged with the first (binary-counter policy)
    _append(store, ra3, dec3)
    return store, np.concatenate([ra1, ra2, ra3]), np.concatenate([dec1, dec2, dec3])


def test_sky_columns_follow_the_schema() -> None:
    assert spatial.sky_columns("observations") == ("ra_pnt", "dec_pnt")
    assert spatial.sky_columns("products") is None
    assert spatial.sky_columns("runs") is None
    assert "observations" in spatial.sky_catalogs()
    cols = (CATALOG_SCHEMAS["observations"][0],) + tuple(
        c for c in CATALOG_SCHEMAS["observations"] if c.name in ("ra_pnt", "dec_pnt"))
    assert spatial._schema_sky(cols) == ("ra_pnt", "dec_pnt")
    # a source-like schema: RA/DEC preferred over other pairs, errors and 'rate' ignored
    from xsa_enhance.store.catalog import Column

    src = (Column("obsid", "str", "", ""), Column("rate", "f8", "ct/s", ""),
           Column("ra_err", "f8", "deg", ""), Column("dec_err", "f8", "deg", ""),
           Column("ra_pnt", "f8", "deg", ""), Column("dec_pnt", "f8", "deg", ""),
           Column("RA", "f8", "degree", ""), Column("DEC", "f8", "deg", ""))
    assert spatial._schema_sky(src) == ("RA", "DEC")
    assert spatial._schema_sky(src[:4]) is None
    assert spatial._schema_sky((Column("ra", "f8", "hourangle", ""),
                                Column("dec", "f8", "deg", ""))) is None


@pytest.mark.parametrize("cone", CONES)
def test_indexed_cone_equals_brute_force(sky_store, cone) -> None:
    store, ra, dec = sky_store
    cat = store.catalog("observations")
    info = spatial.index_info(cat)
    assert info["usable"] and info["indexed"] == len(ra) == cat.nrows
    expected = _brute(ra, dec, *cone)
    got = spatial.cone_rows(cat, *cone)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(spatial.cone_rows(cat, *cone, use_index=False), expected)


def test_random_cones_equal_brute_force(sky_store) -> None:
    store, ra, dec = sky_store
    cat = store.catalog("observations")
    rng = np.random.default_rng(5)
    for _ in range(60):
        ra0 = rng.uniform(-5, 365) % 360
        dec0 = float(np.clip(rng.choice([rng.uniform(-90, 90), rng.normal(90, 1), rng.normal(-90, 1)]),
                             -90, 90))
        radius = float(10 ** rng.uniform(-3, 1.5))
        np.testing.assert_array_equal(spatial.cone_rows(cat, ra0, dec0, radius),
                                      _brute(ra, dec, ra0, dec0, radius))


def test_segments_stay_few_and_contiguous(tmp_path) -> None:
    rng = np.random.default_rng(2)
    store = ProductStore(tmp_path / "s.zarr")
    ras, decs = [], []
    for size in [50, 7, 300, 1, 1, 40, 1000, 3, 3, 3, 200]:
        ra, dec = _sky(rng, size)
        ras.append(ra)
        decs.append(dec)
        _append(store, ra, dec)
        cat = store.catalog("observations")
        segs = cat.group["sky_index"].attrs["segments"]
        sizes = [s["stop"] - s["start"] for s in segs]
        assert segs[0]["start"] == 0 and segs[-1]["stop"] == cat.nrows
        assert all(a["stop"] == b["start"] for a, b in zip(segs, segs[1:]))
        assert all(2 * b < a for a, b in zip(sizes, sizes[1:]))  # binary-counter invariant
        # no stray segment groups are left
        assert sorted(cat.group["sky_index"].keys()) == sorted(s["name"] for s in segs)
    ra, dec = np.concatenate(ras), np.concatenate(decs)
    for cone in CONES:
        np.testing.assert_array_equal(spatial.cone_rows(store.catalog("observations"), *cone),
                                      _brute(ra, dec, *cone))


def test_unindexed_tail_and_missing_index_still_answer(tmp_path) -> None:
    rng = np.random.default_rng(3)
    store = ProductStore(tmp_path / "s.zarr")
    ra1, dec1 = _clusters(rng, 4000)
    ra2, dec2 = _clusters(rng, 1000)
    _append(store, ra1, dec1)
    _append(store, ra2, dec2, index=False)  # e.g. a commit killed before its index update
    ra, dec = np.concatenate([ra1, ra2]), np.concatenate([dec1, dec2])
    cat = store.catalog("observations")
    assert spatial.index_info(cat)["indexed"] == 4000
    for cone in CONES:
        np.testing.assert_array_equal(spatial.cone_rows(cat, *cone), _brute(ra, dec, *cone))
    # a store written before the index: no index group at all -> full scan
    del cat.group["sky_index"]
    assert spatial.index_info(cat) == {"columns": ("ra_pnt", "dec_pnt"), "indexed": 0,
                                       "rows": 5000, "segments": 0, "usable": False}
    for cone in CONES[:5]:
        np.testing.assert_array_equal(spatial.cone_rows(cat, *cone), _brute(ra, dec, *cone))
    # building it afterwards (what `catalog index` and the next commit do)
    assert spatial.update_index(cat) == 5000
    assert spatial.index_info(cat)["indexed"] == 5000
    for cone in CONES:
        np.testing.assert_array_equal(spatial.cone_rows(cat, *cone), _brute(ra, dec, *cone))


def test_stray_or_inconsistent_index_is_ignored_then_repaired(tmp_path) -> None:
    rng = np.random.default_rng(4)
    store = ProductStore(tmp_path / "s.zarr")
    ra, dec = _sky(rng, 3000)
    _append(store, ra, dec)
    cat = store.catalog("observations")
    idx = cat.group["sky_index"]
    # an index claiming more rows than published (not possible by construction) is not used
    attrs = dict(idx.attrs)
    attrs["segments"] = [{**attrs["segments"][0], "stop": 4000}]
    idx.attrs.put(attrs)
    assert not spatial.index_info(cat)["usable"]
    np.testing.assert_array_equal(spatial.cone_rows(cat, 10, 10, 20), _brute(ra, dec, 10, 10, 20))
    assert spatial.update_index(cat) == 3000  # rebuilt
    assert spatial.index_info(cat)["usable"]
    # a segment group left unreferenced by an interrupted merge is dropped by the next update
    idx = cat.group["sky_index"]
    idx.create_group("s000000000000_000000009999")
    ra2, dec2 = _sky(rng, 10)
    _append(store, ra2, dec2)
    assert "s000000000000_000000009999" not in store.catalog("observations").group["sky_index"]


def test_commit_and_rewrite_keep_the_index(tmp_path) -> None:
    """The real commit path indexes new rows; removing observations re-indexes the new
    catalog generation; query_catalog answers like the brute force."""
    store = ProductStore(tmp_path / "s.zarr")
    rng = np.random.default_rng(6)
    blank = {c.name: {"str": "", "f8": 0.0, "i8": 0, "bool": False}[c.dtype]
             for c in CATALOG_SCHEMAS["observations"] if c.name not in ("run_id", "created")}
    rows = []
    for i in range(120):
        ra, dec = _sky(rng, 1)
        rows.append({**blank, "obsid": f"01000{i:05d}", "expidstr": "S003",
                     "ra_pnt": float(ra[0] % 360), "dec_pnt": float(dec[0]), "status": "ok"})
    store.commit({"observations": rows[:80]}, run_id="r1")
    assert spatial.index_info(store.catalog("observations"))["indexed"] == 80
    store.commit({"observations": rows[80:]}, run_id="r2")
    cat = store.catalog("observations")
    assert spatial.index_info(cat)["indexed"] == 120
    ra = np.array([r["ra_pnt"] for r in rows])
    dec = np.array([r["dec_pnt"] for r in rows])
    t = query_catalog(store, catalog="observations", cone=(100.0, 20.0, 60.0))
    expected = sorted(rows[i]["obsid"] for i in _brute(ra, dec, 100.0, 20.0, 60.0))
    assert list(t["obsid"]) == expected and len(expected) > 5
    assert t["ra_pnt"].unit == "deg" and t["dec_pnt"].description

    drop = [rows[i]["obsid"] for i in range(0, 120, 3)]
    store.remove_observations(drop)
    cat = store.catalog("observations")
    assert spatial.index_info(cat) == {"columns": ("ra_pnt", "dec_pnt"), "indexed": 80,
                                       "rows": 80, "segments": 1, "usable": True}
    kept = [i for i in range(120) if i % 3]
    t = query_catalog(store, catalog="observations", cone=(100.0, 20.0, 60.0))
    expected = sorted(rows[i]["obsid"] for i in kept
                      if _haversine_deg(100.0, 20.0, ra[i], dec[i]) <= 60.0)
    assert list(t["obsid"]) == expected


def test_read_rows_reads_the_given_rows(sky_store) -> None:
    store, ra, dec = sky_store
    cat = store.catalog("observations")
    rows = np.array([70_001, 3, 45_000, 3])
    t = spatial.read_rows(cat, rows)
    assert list(t["obsid"]) == [f"{r:010d}" for r in rows]
    np.testing.assert_array_equal(np.asarray(t["ra_pnt"]), ra[rows])
    assert t["ra_pnt"].unit == "deg" and t.colnames == [c.name for c in cat.columns]
    with pytest.raises(IndexError):
        spatial.read_rows(cat, [cat.nrows])


def test_bad_cones_are_refused(sky_store) -> None:
    cat = sky_store[0].catalog("observations")
    for cone in [(0, 95, 1), (0, 0, -1), (0, 0, 181), (np.nan, 0, 1)]:
        with pytest.raises(ValueError, match="bad cone"):
            spatial.cone_rows(cat, *cone)
    with pytest.raises(ValueError, match="no sky position"):
        spatial.cone_rows(sky_store[0].catalog("products"), 0, 0, 1)


def test_planner_scans_when_the_index_would_read_more(sky_store, monkeypatch) -> None:
    store, ra, dec = sky_store
    cat = store.catalog("observations")
    monkeypatch.setattr(spatial, "_SCAN_RATIO", 2)
    reads = []
    real = spatial._read_planned
    monkeypatch.setattr(spatial, "_read_planned",
                        lambda *a: reads.append(len(a[1])) or real(*a))
    np.testing.assert_array_equal(spatial.cone_rows(cat, 30.0, 60.0, 95.0),
                                  _brute(ra, dec, 30.0, 60.0, 95.0))
    assert reads == []  # most of the sky: the position columns are scanned
    np.testing.assert_array_equal(spatial.cone_rows(cat, 45.0, 30.0, 0.5),
                                  _brute(ra, dec, 45.0, 30.0, 0.5))
    assert reads and sum(reads) * 2 < cat.nrows  # a small cone reads a few index chunks
