"""Benchmark of the store's integrity machinery: what checksums cost, how fast --deep reads.

On a local store (the temporary folder), with images of the real grids (a 411 x 403 slice
input of int32 counts, float32 exposure and bool mask; a 822 x 806 float32 SR product with
its mask, the product kind that dominates a run's bytes):

* ``write_*``: seconds per :meth:`ProductStore.write_product` / ``write_slice_input`` and the
  throughput in MB/s (uncompressed bytes), with the checksums (as shipped) and with the
  checksum step replaced by a no-op; ``*_overhead`` is the relative cost;
* ``commit_*``: seconds per catalog commit of 200 product rows on top of ``rows_before``
  published rows, with and without the block digests of the catalog columns;
* ``deep_check_*``: :func:`~xsa_enhance.store.integrity.deep_check` over the whole store
  (every array re-read and hashed, every catalog column checked), in MB/s of array data and
  products per second, next to the schema-only :func:`validate_store`;
* ``lease_ms``: taking and releasing the writer lease.

The median of ``repeats`` interleaved runs is reported. Run:
``python -m benchmarks.run --only store_integrity`` or
``python benchmarks/bench_store_integrity.py``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _images(seed: int) -> dict[str, np.ndarray]:
    from xsa_enhance.instrument.grid import GRID_1X

    rng = np.random.default_rng(seed)
    ny, nx = GRID_1X.shape
    mask = np.ones((ny, nx), dtype=bool)
    mask[:, :20] = False
    counts = rng.poisson(0.3, (ny, nx)).astype(np.int32) * mask
    sr = rng.gamma(0.5, 1e-3, (2 * ny, 2 * nx)).astype(np.float32)
    return {"counts": counts, "mask": mask, "sr": sr,
            "sr_mask": np.repeat(np.repeat(mask, 2, 0), 2, 1)}


@contextmanager
def _no_checksums():
    import xsa_enhance.store.image_groups as ig

    original = ig.array_checksum
    ig.array_checksum = lambda arr, data: {}
    try:
        yield
    finally:
        ig.array_checksum = original


@contextmanager
def _no_digests():
    import xsa_enhance.store.catalog_commits as cc

    original = cc.update_catalog_digests
    cc.update_catalog_digests = lambda group, entry, rows_before: None
    try:
        yield
    finally:
        cc.update_catalog_digests = original


def _product_row(i: int, obsid: str) -> dict[str, Any]:
    from xsa_enhance.store.catalog import CATALOG_SCHEMAS

    fill = {"str": "x", "f8": 1.5, "i8": 3, "bool": False}
    row = {c.name: fill[c.dtype] for c in CATALOG_SCHEMAS["products"]
           if c.name not in ("run_id", "created")}
    row.update(obsid=obsid, slice_id=f"S003_020ks_{i:05d}", model="m", clamp_mode="constant",
               store_path=f"obs/{obsid}/S003_020ks_{i:05d}/products/m__constant")
    return row


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the figures described in the module docstring.

    Parameters
    ----------
    quick : bool
        Fewer products and repeats.

    Returns
    -------
    dict
        The figures (seconds, MB/s, relative overheads).
    """
    from xsa_enhance.config.store_check import validate_store
    from xsa_enhance.store import ProductStore
    from xsa_enhance.store.integrity import deep_check
    from xsa_enhance.store.lease import StoreLease

    import zarr

    from xsa_enhance.store.integrity import _check_catalogs, array_checksum, update_catalog_digests

    n_products = 4 if quick else 12
    repeats = 1 if quick else 3
    rows_before = 2000 if quick else 20000
    img = _images(0)
    mb_input = (2 * img["counts"].nbytes + img["mask"].nbytes) / 1e6  # counts, exposure, mask
    mb_product = (img["sr"].nbytes + img["sr_mask"].nbytes) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="xsa-bench-integrity-"))
    times: dict[str, list[float]] = {k: [] for k in (
        "write_product_s", "write_product_nochecksum_s", "write_input_s",
        "write_input_nochecksum_s", "checksum_product_s", "commit_s", "commit_nodigest_s",
        "digest_step_s", "deep_check_s", "validate_s", "catalog_check_s", "lease_ms")}
    try:
        obsid = "0123456789"
        for rep in range(repeats):
            url = tmp / f"store{rep}.zarr"
            store = ProductStore(url, mode="a")
            store.begin_observation(obsid, attrs={"obsid": obsid})
            for i in range(n_products):
                sid = f"S003_020ks_{i:05d}"
                for checks in (False, True):  # the last write of each group has checksums
                    ctx = _no_checksums() if not checks else _nullcontext()
                    name = "" if checks else "_nochecksum"
                    with ctx:
                        t0 = time.perf_counter()
                        store.write_slice_input(obsid, sid, counts=img["counts"],
                                                exposure_s=2e4, mask=img["mask"], attrs={})
                        times[f"write_input{name}_s"].append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        path = store.write_product(obsid, sid, model="m", clamp="constant",
                                                   counts=img["sr"], mask=img["sr_mask"],
                                                   attrs={"grid": "2x"})
                        times[f"write_product{name}_s"].append(time.perf_counter() - t0)
                group = zarr.open_group(str(url / path), mode="r")
                t0 = time.perf_counter()
                array_checksum(group["counts"], img["sr"])
                array_checksum(group["mask"], img["sr_mask"])
                times["checksum_product_s"].append(time.perf_counter() - t0)
            store.finish_observation(obsid)
            # every array re-read and hashed (catalogs still empty) vs the schema check
            t0 = time.perf_counter()
            findings = deep_check(url)
            times["deep_check_s"].append(time.perf_counter() - t0)
            assert findings == [], findings[:3]
            t0 = time.perf_counter()
            validate_store(url)
            times["validate_s"].append(time.perf_counter() - t0)
            # catalog commits: rows_before published rows, then 200 more, with/without digests
            store.commit({"products": [_product_row(i, obsid) for i in range(rows_before)]},
                         run_id="bench")
            k = rows_before
            for digests in (False, True):
                batch = [_product_row(k + i, obsid) for i in range(200)]
                k += 200
                with (_nullcontext() if digests else _no_digests()):
                    t0 = time.perf_counter()
                    store.commit({"products": batch}, run_id="bench")
                    times["commit_s" if digests else "commit_nodigest_s"].append(
                        time.perf_counter() - t0)
            # the digest step alone, as a commit of 200 rows does it
            state = store._catalog_state()
            entry = dict(state["products"])
            t0 = time.perf_counter()
            update_catalog_digests(store.catalog("products").group, entry, k - 200)
            times["digest_step_s"].append(time.perf_counter() - t0)
            update_catalog_digests(store.catalog("products").group, state["products"], 0)
            store.root.attrs["catalogs"] = state
            t0 = time.perf_counter()
            found = _check_catalogs(zarr.open_group(str(url), mode="r"), state)
            times["catalog_check_s"].append(time.perf_counter() - t0)
            assert found == [], found[:3]
            t0 = time.perf_counter()
            StoreLease(url, run_id="bench").acquire().release()
            times["lease_ms"].append(1e3 * (time.perf_counter() - t0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    mb_total = n_products * (mb_input + mb_product)
    return {
        "n_products": n_products,
        "repeats": repeats,
        "write_product_s": med["write_product_s"],
        "write_product_nochecksum_s": med["write_product_nochecksum_s"],
        "write_product_MBps": mb_product / med["write_product_s"],
        "write_product_nochecksum_MBps": mb_product / med["write_product_nochecksum_s"],
        "checksum_step_product_s": med["checksum_product_s"],
        "checksum_step_share_of_write": med["checksum_product_s"] / med["write_product_s"],
        "write_input_s": med["write_input_s"],
        "write_input_nochecksum_s": med["write_input_nochecksum_s"],
        "catalog_rows_before": rows_before,
        "commit_200_rows_s": med["commit_s"],
        "commit_200_rows_nodigest_s": med["commit_nodigest_s"],
        "digest_step_200_rows_s": med["digest_step_s"],
        "deep_check_arrays_s": med["deep_check_s"],
        "deep_check_MBps": mb_total / med["deep_check_s"],
        "deep_check_products_per_s": n_products / med["deep_check_s"],
        "validate_schema_only_s": med["validate_s"],
        "deep_check_catalog_rows_per_s": (rows_before + 400) / med["catalog_check_s"],
        "lease_ms": med["lease_ms"],
    }


@contextmanager
def _nullcontext():
    yield


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
