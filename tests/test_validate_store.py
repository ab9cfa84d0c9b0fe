"""`xsa-enhance validate STORE`: catalog rows and product attributes checked against schemas/.

The store is written through the store API with hand-chosen defects; the expected problems
are listed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.config import is_product_store, validate_store
from xsa_enhance.errors import InputFileError
from xsa_enhance.store import CATALOG_SCHEMAS, ProductStore, product_key

OBSID = "0123700101"
SLICE = "S003_020ks_000"

GOOD_ATTRS = {
    "obsid": OBSID,
    "slice_id": SLICE,
    "model": "xmm-superres-v1",
    "kind": "sr",
    "weights_sha256": "ab" * 32,
    "clamp_mode": "constant",
    "clamp_value": 0.0022336,
    "stretch": "sqrt",
    "grid": "2x",
    "input_slice": SLICE,
    "input_exposure_s": 20000.0,
    "output_exposure_s": 20000.0,
    "expression": "PI > 300 && RAWY > 12",
    "band_eV": [500, 2000],
    "gtis": [[0.0, 20000.0]],
    "ra_pnt": 10.68,
    "dec_pnt": 41.27,
    "pa_pnt": 12.0,
    "software_version": "0.1.0",
    "caveats": ["outputs can contain hallucinated features"],
}


def _slice_row(**values):
    row = {c.name: {"str": "", "f8": 0.0, "i8": 0, "bool": False}[c.dtype]
           for c in CATALOG_SCHEMAS["slices"] if c.name not in ("run_id", "created")}
    row.update(obsid=OBSID, expidstr="S003", slice_id=SLICE, length_ks=20, n_slices=1,
               exposure=20000.0, counts=10, band="500-2000", store_path=f"obs/{OBSID}/{SLICE}")
    row.update(values)
    return row


@pytest.fixture()
def store_path(tmp_path):
    path = tmp_path / "store.zarr"
    store = ProductStore(path)
    store.begin_observation(OBSID, attrs={})
    mask = np.ones((411, 403), bool)
    store.write_slice_input(OBSID, SLICE, counts=np.zeros((411, 403), np.int32),
                            exposure_s=2e4, mask=mask, attrs={})
    store.finish_observation(OBSID)
    sr = np.zeros((822, 806), np.float32)
    ones = np.ones_like(sr, bool)
    store.write_product(OBSID, SLICE, model="xmm-superres-v1", clamp="constant", counts=sr,
                        mask=ones, attrs=GOOD_ATTRS)
    bad = dict(GOOD_ATTRS, kind="xx", weights_sha256="abc", clamp_mode="quantile:0.9999")
    store.write_product(OBSID, SLICE, model="xmm-superres-v1", clamp="quantile:0.9999",
                        counts=sr, mask=ones, attrs=bad)
    # a product task killed half-way: its group exists but is not complete
    store.root.create_group(store.product_path(OBSID, SLICE, "xmm-denoise-v1", "constant"),
                            attributes={"complete": False})
    # "1234" breaks the obsid pattern (10 digits)
    store.commit({"slices": [_slice_row(), _slice_row(obsid="1234", slice_id="S003_020ks_001")]},
                 run_id="r1")
    return path


def test_every_problem_of_the_store_is_found(store_path):
    assert is_product_store(store_path) and not is_product_store(store_path.parent)
    issues = validate_store(store_path)
    got = sorted((i.file.removeprefix(str(store_path)), i.location) for i in issues)
    prod = f"/obs/{OBSID}/{SLICE}/products/"
    assert got == sorted([
        ("/catalogs/slices", "$[1].obsid"),
        (prod + product_key("xmm-superres-v1", "quantile:0.9999"), "$.kind"),
        (prod + product_key("xmm-superres-v1", "quantile:0.9999"), "$.weights_sha256"),
        (prod + product_key("xmm-denoise-v1", "constant"), "$.complete"),
    ])
    assert any("incomplete" in i.message for i in issues)


def test_cli_validates_a_store_folder(store_path, tmp_path):
    res = CliRunner().invoke(main, ["validate", str(store_path)])
    assert res.exit_code == 1
    assert len(res.stdout.strip().splitlines()) == 4
    assert "1 file(s) checked, 4 problem(s) in 1 file(s)" in res.stderr
    # a clean store passes
    clean = ProductStore(tmp_path / "clean.zarr")
    clean.commit({"slices": [_slice_row()]}, run_id="r1")
    res = CliRunner().invoke(main, ["validate", str(tmp_path / "clean.zarr")])
    assert res.exit_code == 0, res.output


def test_not_a_store(tmp_path):
    with pytest.raises(InputFileError):
        validate_store(tmp_path)
