"""Product store: owned groups, completion flags, atomic catalog commits, orphans, force."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from xsa_enhance.errors import InputFileError
from xsa_enhance.store import CATALOG_SCHEMAS, ProductStore, product_key, slice_key


def _row(name, **values):
    row = {}
    for col in CATALOG_SCHEMAS[name]:
        if col.name in ("run_id", "created"):
            continue
        row[col.name] = {"str": "", "f8": 0.0, "i8": 0, "bool": False}[col.dtype]
    row.update(values)
    return row


def _write_obs(store, obsid, n_slices=2, seed=0):
    rng = np.random.default_rng(seed)
    store.begin_observation(obsid, attrs={"ra_pnt": 10.0})
    rows = []
    for i in range(n_slices):
        sid = slice_key("S003", 10, i)
        counts = rng.poisson(0.3, size=(411, 403)).astype(np.int32)
        mask = rng.random((411, 403)) > 0.1
        path = store.write_slice_input(obsid, sid, counts=counts, exposure_s=1e4, mask=mask,
                                       attrs={"gtis": [[0.0, 1e4]]})
        rows.append(_row("slices", obsid=obsid, slice_id=sid, length_ks=10, index=i,
                         counts=int(counts[mask].sum()), store_path=path))
    store.finish_observation(obsid)
    return rows


def test_image_roundtrip_one_shard_per_array(tmp_path):
    store = ProductStore(tmp_path / "s.zarr")
    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, size=(411, 403)).astype(np.int32)
    mask = rng.random((411, 403)) > 0.3
    store.begin_observation("0123456789", attrs={})
    path = store.write_slice_input("0123456789", "S003_010ks_000", counts=counts,
                                   exposure_s=9876.5, mask=mask, attrs={"band_eV": [500, 2000]})
    back = ProductStore(tmp_path / "s.zarr", mode="r").read_slice_input("0123456789", "S003_010ks_000")
    np.testing.assert_array_equal(back.counts, counts)
    np.testing.assert_array_equal(back.mask, mask)
    # exposure map: the exposure inside the mask, 0 outside
    np.testing.assert_array_equal(back.exposure, np.where(mask, np.float32(9876.5), 0))
    assert back.attrs["complete"] is True and back.attrs["band_eV"] == [500, 2000]
    # each array is one shard covering the whole image (a task writes whole shards only)
    arr = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")[f"{path}/counts"]
    assert arr.shards is not None
    assert all(s >= n for s, n in zip(arr.shards, arr.shape))
    assert arr.metadata.dimension_names == ("dety", "detx")
    # a product on the 2x grid
    sr = rng.random((822, 806)).astype(np.float32)
    store.write_product("0123456789", "S003_010ks_000", model="m-v1", clamp="quantile:0.99",
                        counts=sr, mask=np.ones_like(sr, bool), attrs={"kind": "sr"})
    prod = store.read_product("0123456789", "S003_010ks_000", "m-v1", "quantile:0.99")
    np.testing.assert_array_equal(prod.counts, sr)
    assert prod.key == product_key("m-v1", "quantile:0.99") == "m-v1__quantile_0.99"


def test_incomplete_group_is_not_readable_and_is_an_orphan(tmp_path):
    store = ProductStore(tmp_path / "s.zarr")
    rows = _write_obs(store, "0000000001")
    store.commit({"slices": rows, "observations": [_row("observations", obsid="0000000001")]},
                 run_id="r")
    # a product task killed after creating its group: complete=False
    g = store.root.create_group(store.product_path("0000000001", rows[0]["slice_id"], "m", "constant"),
                                attributes={"complete": False})
    g.create_array("counts", shape=(4, 4), dtype="f4")
    with pytest.raises(InputFileError, match="no complete product"):
        store.read_product("0000000001", rows[0]["slice_id"], "m", "constant")
    # a complete product whose row was never committed
    store.write_product("0000000001", rows[1]["slice_id"], model="m", clamp="constant",
                        counts=np.zeros((411, 403), np.float32), mask=np.ones((411, 403), bool),
                        attrs={})
    # an observation group left without any row
    _write_obs(store, "0000000002")
    orphans = store.find_orphans()
    assert sorted(orphans) == sorted([
        "obs/0000000001/S003_010ks_000/products/m__constant",
        "obs/0000000001/S003_010ks_001/products/m__constant",
        "obs/0000000002",
    ])
    assert sorted(store.clean_orphans()) == sorted(orphans)
    assert store.find_orphans() == []
    assert store.list_observations() == ["0000000001"]
    assert store.list_products("0000000001", rows[0]["slice_id"]) == []


def test_product_uncertainty_is_part_of_the_group_and_a_kill_leaves_an_orphan(
        tmp_path, monkeypatch):
    store = ProductStore(tmp_path / "s.zarr")
    rows = _write_obs(store, "0000000001")
    sid = rows[0]["slice_id"]
    rng = np.random.default_rng(4)
    counts = rng.random((822, 806)).astype(np.float32)
    sigma = (0.1 * rng.random((822, 806))).astype(np.float32)
    mask = np.ones((822, 806), bool)
    path = store.write_product("0000000001", sid, model="m", clamp="constant", counts=counts,
                               mask=mask, attrs={"uncertainty_n_samples": 4},
                               uncertainty=sigma)
    prod = store.read_product("0000000001", sid, "m", "constant")
    np.testing.assert_array_equal(prod.uncertainty, sigma)
    assert prod.attrs["uncertainty"] is True and prod.attrs["complete"] is True
    arr = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")[f"{path}/uncertainty"]
    assert arr.dtype == np.float32 and arr.shape == counts.shape
    assert all(s >= n for s, n in zip(arr.shards, arr.shape))  # one shard: owned whole
    # without: no array, attribute False
    store.write_product("0000000001", rows[1]["slice_id"], model="m", clamp="constant",
                        counts=counts, mask=mask, attrs={})
    plain = store.read_product("0000000001", rows[1]["slice_id"], "m", "constant")
    assert plain.uncertainty is None and plain.attrs["uncertainty"] is False
    with pytest.raises(ValueError, match="uncertainty .* differ in shape"):
        store.write_product("0000000001", sid, model="m2", clamp="constant", counts=counts,
                            mask=mask, attrs={}, uncertainty=sigma[:-1])
    store.commit({"slices": rows, "observations": [_row("observations", obsid="0000000001")],
                  "products": [_row("products", obsid="0000000001", slice_id=r["slice_id"],
                                    model="m", clamp_mode="constant", uncertainty_samples=n,
                                    store_path=store.product_path("0000000001", r["slice_id"],
                                                                  "m", "constant"))
                               for r, n in zip(rows, (4, 0))]}, run_id="r")
    assert store.find_orphans() == []

    # a task killed while writing the uncertainty: the group is never marked complete
    real = zarr.Group.create_array

    def killed(self, name, *args, **kwargs):
        if name == "uncertainty":
            raise KeyboardInterrupt("killed")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", killed)
    with pytest.raises(KeyboardInterrupt):
        store.write_product("0000000001", sid, model="m3", clamp="constant", counts=counts,
                            mask=mask, attrs={}, uncertainty=sigma)
    monkeypatch.setattr(zarr.Group, "create_array", real)
    with pytest.raises(InputFileError, match="no complete product"):
        store.read_product("0000000001", sid, "m3", "constant")
    killed_path = store.product_path("0000000001", sid, "m3", "constant")
    assert store.find_orphans() == [killed_path]
    # a complete group announcing an uncertainty it lacks is not whole either
    del store.root[path]["uncertainty"]
    assert sorted(store.find_orphans()) == sorted([path, killed_path])


def test_commit_is_atomic_across_catalogs_and_deduplicates(tmp_path):
    url = tmp_path / "s.zarr"
    store = ProductStore(url)
    rows = _write_obs(store, "0000000001", n_slices=3)
    obs = _row("observations", obsid="0000000001", expidstr="S003", ra_pnt=1.5)
    # A driver killed in the middle of a commit: the columns are written, nothing published.
    store.catalog("slices").write_rows([dict(r, run_id="killed", created="") for r in rows])
    fresh = ProductStore(url, mode="r")
    assert fresh.catalog("slices").nrows == 0 and len(fresh.catalog("slices").read()) == 0
    # The next commit overwrites the unpublished tail and publishes both catalogs together.
    added = store.commit({"slices": rows, "observations": [obs]}, run_id="run-1")
    assert added == {"slices": 3, "observations": 1}
    reread = ProductStore(url, mode="r")
    t = reread.catalog("slices").read()
    assert list(t["slice_id"]) == [r["slice_id"] for r in rows]
    assert list(t["counts"]) == [r["counts"] for r in rows]
    assert set(t["run_id"]) == {"run-1"}
    assert reread.catalog("observations").read()["ra_pnt"][0] == 1.5
    # the row counts of every catalog live in one root attribute (one atomic write)
    meta = json.loads((url / "zarr.json").read_text())
    assert meta["attributes"]["catalogs"]["slices"]["nrows"] == 3
    assert meta["attributes"]["catalogs"]["observations"]["nrows"] == 1
    # committing the same keys again adds nothing
    assert store.commit({"slices": rows[:2], "observations": [obs]}, run_id="run-2") == {}
    assert store.catalog("slices").nrows == 3
    # runs is a log without key: every row is kept
    run = {"run_id": "r", "obsid": "0000000001", "status": "ok", "stage": "store", "reason": "",
           "n_slices": 3, "n_products": 0, "started": "", "finished": "", "duration": 1.0,
           "software_version": "x"}
    store.commit({"runs": [run, run]}, run_id="r")
    assert store.catalog("runs").nrows == 2
    with pytest.raises(ValueError, match="missing columns"):
        store.commit({"observations": [{"obsid": "1"}]}, run_id="r")


def test_remove_observations_switches_catalog_generation(tmp_path):
    url = tmp_path / "s.zarr"
    store = ProductStore(url)
    for i, obsid in enumerate(["0000000001", "0000000002"]):
        rows = _write_obs(store, obsid, seed=i)
        store.commit({"slices": rows, "observations": [_row("observations", obsid=obsid)]},
                     run_id="r")
    assert store.remove_observations(["0000000001"]) == 3  # 1 observation + 2 slices
    reread = ProductStore(url, mode="r")
    assert list(reread.catalog("observations").read()["obsid"]) == ["0000000002"]
    assert list(reread.catalog("slices").read()["obsid"]) == ["0000000002"] * 2
    assert reread.list_observations() == ["0000000002"]
    assert store.stray_catalog_groups() == []
    assert store.find_orphans() == []
    # A catalog generation written but never switched to (driver killed) is stray.
    from xsa_enhance.store.catalog import Catalog

    Catalog.create(store.root["catalogs"], "slices", group_name="slices.9")
    assert store.stray_catalog_groups() == ["catalogs/slices.9"]
    store.clean_orphans()
    assert store.stray_catalog_groups() == []


def test_consolidated_metadata_written_at_end_and_dropped_while_writing(tmp_path):
    url = tmp_path / "s.zarr"
    store = ProductStore(url)
    _write_obs(store, "0000000001")
    store.consolidate()
    assert json.loads((url / "zarr.json").read_text()).get("consolidated_metadata")
    # a reader on the consolidated store sees the slice groups
    assert ProductStore(url, mode="r").list_slices("0000000001") == ["S003_010ks_000", "S003_010ks_001"]
    writer = ProductStore(url, mode="r+")
    writer.invalidate_consolidated()
    assert not json.loads((url / "zarr.json").read_text()).get("consolidated_metadata")


def test_bad_store_paths_raise_input_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="no product store"):
        ProductStore(tmp_path / "missing.zarr", mode="r")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_group("something")
    with pytest.raises(InputFileError, match="not a product store"):
        ProductStore(tmp_path / "other.zarr", mode="a")
    with pytest.raises(InputFileError, match="not an xsa-enhance product store"):
        ProductStore(tmp_path / "other.zarr", mode="r")


def test_store_through_an_fsspec_url(tmp_path):
    import uuid

    url = f"memory://xsa-test-{uuid.uuid4().hex}/store.zarr"  # zarr's FsspecStore
    store = ProductStore(url)
    assert type(store.root.store).__name__ == "FsspecStore"
    rows = _write_obs(store, "0000000007", n_slices=1)
    store.commit({"slices": rows, "observations": [_row("observations", obsid="0000000007")]},
                 run_id="r")
    store.consolidate()
    back = ProductStore(url, mode="r")
    assert list(back.catalog("slices").read()["slice_id"]) == ["S003_010ks_000"]
    data = back.read_slice_input("0000000007", "S003_010ks_000")
    assert int(data.counts[data.mask].sum()) == rows[0]["counts"]
    # file:// URLs are local directories
    local = ProductStore((tmp_path / "l.zarr").as_uri())
    assert local.url == str(tmp_path / "l.zarr") and (tmp_path / "l.zarr" / "zarr.json").is_file()
