"""Spatial index benchmark: cone queries over an archive-scale catalog, indexed vs full scan.

A synthetic archive-like sky catalog is written into a product store: ``n_fields`` pointings
spread uniformly over the sky (a few placed on RA=0 and near both poles), each with
``rows / n_fields`` positions within 15 arcmin of its pointing, appended field by field as
runs commit them. The carrier is the ``observations`` catalog (today's catalog with sky
columns; the index is generic over any catalog with ``ra*``/``dec*`` degree columns, e.g. a
``sources`` catalog): its ``ra_pnt``/``dec_pnt`` columns are appended by
:meth:`~xsa_enhance.store.catalog.Catalog.write_columns` (the other columns stay at their fill
value, which costs no storage) and the row count published as a commit does. Measured side by side in one run:

- ``build``: writing the columns, building the index of all rows, and extending it by one
  nightly-run-sized append (``append_rows`` rows on top of the archive);
- ``cone``: for each cone (10 arcsec about a position, 15 arcmin and 1 deg about a pointing,
  cones on RA=0/360 and at the poles), :func:`xsa_enhance.store.spatial.cone_rows` with the
  index (best of 3) and with ``use_index=False`` -- the full scan: read both position columns,
  apply the same exact angular-distance cut to every row -- and whether both returned the
  same rows. ``speedup`` is the ratio of the summed times; ``speedup_min`` the worst cone's;
- ``crossmatch``: :func:`xsa_enhance.store.crossmatch.crossmatch` within 10 arcsec of a list
  of catalog positions moved by ~5 arcsec -- ``region``: 2000 positions within 10 deg of one
  point, ``allsky``: 200 positions anywhere -- through the index and against every row, and
  whether both gave the same pairs; ``candidates_*`` time the selection of
  the catalog rows near the positions alone (:func:`~xsa_enhance.store.spatial.near_rows`),
  the rest is pairing and reading the matched rows' columns, the same work both ways;
- ``table``: the same for :func:`~xsa_enhance.store.spatial.cone_table` (the rows read
  back as a Table with every column), on the 15 arcmin cones.

Usage: ``python -m benchmarks.bench_spatial [--quick]`` (quick: 0.5 M rows, 9 cones, lists of
500 and 100 positions).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from astropy.table import Table

from xsa_enhance.store import ProductStore, spatial
from xsa_enhance.store.crossmatch import crossmatch


def _fields(rng: np.random.Generator, n_fields: int) -> tuple[np.ndarray, np.ndarray]:
    ra = rng.uniform(0, 360, n_fields)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_fields)))
    # fields on the RA=0/360 seam and near both poles, so some cones test those
    ra[:4], dec[:4] = [0.05, 359.95, 40.0, 220.0], [10.0, -20.0, 89.9, -89.85]
    return ra, dec


def _sources(rng: np.random.Generator, ra0: np.ndarray, dec0: np.ndarray, per_field: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """``per_field`` positions uniform within 15 arcmin of each pointing (tangent plane)."""
    n = len(ra0) * per_field
    r = 0.25 * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    dec = np.repeat(dec0, per_field) + r * np.sin(phi)
    over = np.abs(dec) > 90  # across a pole: reflect
    dec[over] = np.sign(dec[over]) * 180 - dec[over]
    cosd = np.maximum(np.cos(np.radians(np.repeat(dec0, per_field))), 1e-3)
    ra = (np.repeat(ra0, per_field) + r * np.cos(phi) / cosd) % 360
    return ra, dec


def _append(store: ProductStore, ra: np.ndarray, dec: np.ndarray) -> None:
    """Append positions to ``observations`` and publish the new row count (as a commit)."""
    n1 = store.catalog("observations").write_columns({"ra_pnt": ra, "dec_pnt": dec})
    state = dict(store.root.attrs["catalogs"])
    state["observations"] = {**state["observations"], "nrows": n1}
    store.root.attrs["catalogs"] = state


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(quick: bool = False) -> dict:
    """Run the benchmark; return its figures (``benchmarks/run.py`` collects them)."""
    rows = 500_000 if quick else 5_000_000
    per_field = 100
    n_fields = rows // per_field
    append_rows = 10_000
    rng = np.random.default_rng(2026)
    fra, fdec = _fields(rng, n_fields)
    ra, dec = _sources(rng, fra, fdec, per_field)
    tmp = Path(tempfile.mkdtemp(prefix="bench_spatial_"))
    try:
        store = ProductStore(tmp / "store.zarr")
        t0 = time.perf_counter()
        _append(store, ra, dec)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        spatial.update_index(store.catalog("observations"))
        index_s = time.perf_counter() - t0
        ara, adec = _sources(rng, *_fields(rng, append_rows // per_field), per_field)
        _append(store, ara, adec)
        t0 = time.perf_counter()
        spatial.update_index(store.catalog("observations"))
        extend_s = time.perf_counter() - t0
        cat = store.catalog("observations")
        info = spatial.index_info(cat)
        assert info["indexed"] == cat.nrows == rows + append_rows

        n_cones = 2 if quick else 8
        picks = rng.choice(np.arange(4, n_fields), n_cones, replace=False)
        cones = [(0.05, 10.0, 0.25), (359.95, -20.0, 0.25), (40.0, 89.9, 0.25),
                 (220.0, -89.85, 1.0), (0.0, 0.0, 1.0)]
        for k, f in enumerate(picks):
            src = f * per_field + int(rng.integers(per_field))
            cones += [(float(ra[src]), float(dec[src]), 10 / 3600),
                      (float(fra[f]), float(fdec[f]), 0.25 if k % 2 else 1.0)]
        per_cone = []
        for cone in cones:
            t_idx, got = _best(lambda: spatial.cone_rows(cat, *cone), 3)
            t_scan, want = _best(lambda: spatial.cone_rows(cat, *cone, use_index=False), 1)
            per_cone.append({"cone": list(cone), "rows": int(len(want)), "indexed_s": t_idx,
                             "scan_s": t_scan, "identical": bool(np.array_equal(got, want))})
        idx_total = sum(c["indexed_s"] for c in per_cone)
        scan_total = sum(c["scan_s"] for c in per_cone)
        table_cones = [c for c in cones if c[2] == 0.25][:3]
        t_tab_idx = t_tab_scan = 0.0
        same_tables = True
        for cone in table_cones:
            t, a = _best(lambda: spatial.cone_table(cat, *cone), 2)
            t_tab_idx += t
            t, b = _best(lambda: spatial.cone_table(cat, *cone, use_index=False), 1)
            t_tab_scan += t
            same_tables &= len(a) == len(b) and bool(np.all(a["ra_pnt"] == b["ra_pnt"]))
        # warm-up outside the timings: the first search_around_sky imports scipy.spatial
        crossmatch(store, Table({"id": [0]}), ra[:1], dec[:1], catalog="observations",
                   radius="10arcsec")
        sep_c = spatial.separation_deg(150.0, 30.0, ra, dec)
        region = np.nonzero(sep_c <= 10.0)[0]  # a survey-sized region, 10 deg about a point
        m_region, m_sky = (500, 100) if quick else (2000, 200)
        lists = {"region": rng.choice(region, min(m_region, len(region)), replace=False),
                 "allsky": rng.choice(len(ra), m_sky, replace=False)}
        xmatch = {}
        for label, pick in lists.items():
            m = len(pick)
            ura = (ra[pick] + rng.normal(0, 5 / 3600, m)) % 360
            udec = np.clip(dec[pick] + rng.normal(0, 5 / 3600, m), -90, 90)
            positions = Table({"id": np.arange(m)})
            t_near_idx, _ = _best(lambda: spatial.near_rows(cat, ura, udec, 10 / 3600), 1)
            t_near_scan, _ = _best(
                lambda: spatial.near_rows(cat, ura, udec, 10 / 3600, use_index=False), 1)
            t_idx, xa = _best(lambda: crossmatch(store, positions, ura, udec,
                                                 catalog="observations", radius="10arcsec"), 1)
            t_scan, xb = _best(lambda: crossmatch(store, positions, ura, udec,
                                                  catalog="observations", radius="10arcsec",
                                                  use_index=False), 1)
            same = (len(xa) == len(xb)
                    and bool(np.all(np.asarray(xa["in_row"]) == np.asarray(xb["in_row"])))
                    and bool(np.all(np.asarray(xa["sep_arcsec"]) == np.asarray(xb["sep_arcsec"]))))
            xmatch[label] = {"positions": m, "radius_arcsec": 10.0, "pairs": len(xa),
                             "indexed_s": t_idx, "scan_s": t_scan, "speedup": t_scan / t_idx,
                             "candidates_indexed_s": t_near_idx,
                             "candidates_scan_s": t_near_scan, "identical": same}
        return {
            "rows": int(cat.nrows),
            "fields": n_fields,
            "build": {"write_columns_s": write_s, "index_all_rows_s": index_s,
                      "extend_index_s": extend_s, "append_rows": append_rows,
                      "segments": info["segments"]},
            "cone": {
                "n_cones": len(cones),
                "rows_returned": [c["rows"] for c in per_cone],
                "indexed_median_s": float(np.median([c["indexed_s"] for c in per_cone])),
                "scan_median_s": float(np.median([c["scan_s"] for c in per_cone])),
                "speedup": scan_total / idx_total,
                "speedup_min": min(c["scan_s"] / c["indexed_s"] for c in per_cone),
                "identical": all(c["identical"] for c in per_cone),
            },
            "crossmatch": xmatch,
            "table": {"n_cones": len(table_cones), "indexed_s": t_tab_idx,
                      "scan_s": t_tab_scan, "speedup": t_tab_scan / t_tab_idx,
                      "identical": same_tables},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=1, default=float))
