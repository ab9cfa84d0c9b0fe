"""Export of stored images: FITS files with the sky WCS, and quicklook PNGs.

The images live on the EPIC-pn DET grid; every exported image carries the WCS of
:mod:`xsa_enhance.formats.skywcs` about the stored pointing (``RA_PNT``/``DEC_PNT``,
``PA_PNT``): the sky TAN WCS as its primary WCS and the DET coordinates as the alternate WCS
``L`` (evselect's physical coordinates). ``docs/events.md`` ("The image WCS") says how exact
it is. The PNGs are drawn by :func:`xsa_enhance.formats.quicklook.quicklook_png`.

A product stored with its per-pixel uncertainty is exported with an ``UNCERTAINTY`` image
extension (1-sigma, same shape, units and WCS as the counts) and, in the quicklook PNGs, a
significance panel (``output / uncertainty``) next to the product.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.errors import InputFileError
from xsa_enhance.formats.enhanced_fits import uncertainty_hdu
from xsa_enhance.formats.quicklook import quicklook_png
from xsa_enhance.formats.skywcs import det_wcs_cards, projection_centre, sky_wcs_header
from xsa_enhance.instrument.grid import grid_for_factor
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["export_fits", "export_png", "select_images"]

logger = logging.getLogger(__name__)


def select_images(
    store: ProductStore,
    obsid: str,
    *,
    slices: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    inputs: bool = True,
) -> list[dict[str, Any]]:
    """The images of one observation that the catalogs list (inputs and products).

    Parameters
    ----------
    store : ProductStore
        The store.
    obsid : str
        Observation identifier.
    slices : sequence of str, optional
        Slice ids (``S003_020ks_000``) or lengths in ks (``"20"``) to keep.
    models : sequence of str, optional
        Model names (``NAME-vN``) or aliases (``NAME``: every version) to keep (default:
        all); an empty sequence keeps no product.
    inputs : bool
        Include the un-enhanced slice images.

    Returns
    -------
    list of dict
        ``{"kind": "input"|"product", "slice_id", "model", "clamp", "path"}``.

    Raises
    ------
    InputFileError
        When the observation is not in the store's catalogs, or a model in ``models`` has
        no product of it (the message lists its models).
    """
    slices_t = store.catalog("slices").read()
    rows = slices_t[np.asarray(slices_t["obsid"], dtype=str) == obsid] if len(slices_t) else slices_t
    if len(rows) == 0:
        raise InputFileError(store.url, f"observation {obsid} has no slices in the catalog")

    def slice_ok(sid: str, length: int) -> bool:
        if not slices:
            return True
        return any(sid == s or (s.replace("ks", "").isdigit() and int(s.replace("ks", "")) == length)
                   for s in slices)

    out: list[dict[str, Any]] = []
    lengths = {}
    for r in rows:
        sid, length = str(r["slice_id"]), int(r["length_ks"])
        lengths[sid] = length
        if inputs and slice_ok(sid, length):
            out.append({"kind": "input", "slice_id": sid, "model": "", "clamp": "",
                        "path": str(r["store_path"])})
    prods = store.catalog("products").read()
    if len(prods):
        prods = prods[np.asarray(prods["obsid"], dtype=str) == obsid]
    selected: set[str] | None = None
    if models is not None:
        from xsa_enhance.errors import ConfigError
        from xsa_enhance.store.query import model_filter

        here = sorted({str(m) for m in prods["model"]}) if len(prods) else []
        selected = set()
        for name in models:
            try:
                chosen = model_filter(name, here, where=f"observation {obsid}", warn=False)
            except ConfigError as exc:
                raise InputFileError(store.url, str(exc)) from exc
            if not chosen:
                listing = ", ".join(here) if here else "none"
                raise InputFileError(store.url, f"observation {obsid} has no product of model "
                                                f"{name!r}; its models: {listing}")
            selected |= chosen
    if len(prods):
        for r in prods:
            sid = str(r["slice_id"])
            if not slice_ok(sid, lengths.get(sid, -1)):
                continue
            if selected is not None and str(r["model"]) not in selected:
                continue
            out.append({"kind": "product", "slice_id": sid, "model": str(r["model"]),
                        "clamp": str(r["clamp_mode"]), "path": str(r["store_path"])})
    if slices and not out:
        raise InputFileError(store.url, f"no image of {obsid} matches slices {list(slices)}")
    return out


def _read(store: ProductStore, obsid: str, item: dict[str, Any]) -> dict[str, Any]:
    """counts, attrs, grid, mask and uncertainty (None for inputs and products without)."""
    if item["kind"] == "input":
        data = store.read_slice_input(obsid, item["slice_id"])
        return {"counts": data.counts, "attrs": data.attrs, "grid": grid_for_factor(1),
                "mask": data.mask, "uncertainty": None}
    prod = store.read_product(obsid, item["slice_id"], item["model"], item["clamp"])
    factor = 2 if str(prod.attrs.get("grid", "1x")).startswith("2") else 1
    return {"counts": prod.counts, "attrs": prod.attrs, "grid": grid_for_factor(factor),
            "mask": prod.mask, "uncertainty": prod.uncertainty}


def _name(obsid: str, item: dict[str, Any]) -> str:
    from xsa_enhance.store.zarr_store import product_key

    if item["kind"] == "input":
        return f"{obsid}_{item['slice_id']}_counts"
    return f"{obsid}_{item['slice_id']}_{product_key(item['model'], item['clamp'])}"


def export_fits(
    store: ProductStore | str | os.PathLike[str],
    obsid: str,
    out_dir: str | os.PathLike[str],
    *,
    slices: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Write FITS images (sky WCS, provenance keywords) of an observation's slices/products.

    Parameters
    ----------
    store : ProductStore or path
        The product store.
    obsid : str
        Observation identifier.
    out_dir : path-like
        Output folder (created).
    slices, models : sequence of str, optional
        Filters as in :func:`select_images`.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from astropy.io import fits

    from xsa_enhance._version import __version__

    if not isinstance(store, ProductStore):
        store = ProductStore(store, mode="r")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for item in select_images(store, obsid, slices=slices, models=models):
        img = _read(store, obsid, item)
        data, attrs, grid = img["counts"], img["attrs"], img["grid"]
        hdr = fits.Header()
        ra, dec, pa = attrs.get("ra_pnt"), attrs.get("dec_pnt"), attrs.get("pa_pnt")
        centre = projection_centre({"RA_PNT": ra, "DEC_PNT": dec, "PA_PNT": pa})
        wcs: dict[str, Any] = {}
        if centre is not None:
            wcs = sky_wcs_header(grid, ra=centre[0], dec=centre[1], pa=centre[2])
            wcs.update({k: v for k, v, _ in det_wcs_cards(grid, primary=False)})
            for k, v in wcs.items():
                hdr[k] = v
        hdr["OBS_ID"] = obsid
        hdr["SLICE"] = item["slice_id"]
        hdr["BUNIT"] = "count"
        hdr["TELESCOP"] = "XMM"
        hdr["INSTRUME"] = "EPN"
        hdr["RA_PNT"] = (ra, "pointing RA (deg)")
        hdr["DEC_PNT"] = (dec, "pointing Dec (deg)")
        hdr["PA_PNT"] = (pa, "position angle (deg)")
        exposure = attrs.get("output_exposure_s", attrs.get("exposure_s"))
        if exposure is not None:
            hdr["EXPOSURE"] = (float(exposure), "exposure the counts represent (s)")
        hdr["CREATOR"] = f"xsa-enhance {__version__}"
        if item["kind"] == "product":
            hdr["MODEL"] = item["model"]
            hdr["WSHA256"] = str(attrs.get("weights_sha256", ""))[:64]
            hdr["CLAMP"] = item["clamp"]
            hdr["STRETCH"] = str(attrs.get("stretch", ""))
            for i, text in enumerate(attrs.get("caveats", []) or []):
                hdr.add_comment(f"caveat {i + 1}: {text}")
        expr = str(attrs.get("expression", ""))
        if expr:
            hdr.add_history(f"screening: {expr}")
        sigma = img["uncertainty"]
        if item["kind"] == "product":
            hdr["XSAUNC"] = (sigma is not None, "UNCERTAINTY extension (1-sigma) present")
        hdus = [fits.PrimaryHDU(data=np.asarray(data), header=hdr)]
        if sigma is not None:
            hdus.append(uncertainty_hdu(sigma, attrs, wcs, exposure_s=float(
                exposure if exposure is not None else 0.0)))
        path = out / f"{_name(obsid, item)}.fits"
        fits.HDUList(hdus).writeto(path, overwrite=overwrite)
        written.append(path)
    logger.info("exported %d FITS images of %s to %s", len(written), obsid, out)
    return written


def export_png(
    store: ProductStore | str | os.PathLike[str],
    obsid: str,
    out_dir: str | os.PathLike[str],
    *,
    slices: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> list[Path]:
    """Write one quicklook PNG per slice: the input next to each of its products (each
    product stored with an uncertainty followed by its significance panel, output /
    uncertainty, 3 sigma marked on the colour bar).

    Returns
    -------
    list of pathlib.Path
        The PNG files.
    """
    if not isinstance(store, ProductStore):
        store = ProductStore(store, mode="r")
    items = select_images(store, obsid, slices=slices, models=models)
    by_slice: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_slice.setdefault(item["slice_id"], []).append(item)
    written = []
    for sid, group in sorted(by_slice.items()):
        panels = []
        for item in sorted(group, key=lambda i: (i["kind"] != "input", i["model"], i["clamp"])):
            img = _read(store, obsid, item)
            data, attrs = img["counts"], img["attrs"]
            label = "input" if item["kind"] == "input" else f"{item['model']} ({item['clamp']})"
            exposure = float(attrs.get("output_exposure_s", attrs.get("exposure_s")) or 1.0)
            label += f"\n{exposure / 1000:.1f} ks, {np.asarray(data).sum():.0f} counts"
            panels.append((label, np.asarray(data, dtype=float) / exposure))
            if img["uncertainty"] is not None:
                from xsa_enhance.models.uncertainty import significance_map

                z = significance_map(data, img["uncertainty"]).astype(float)
                z[~np.asarray(img["mask"], dtype=bool)] = np.nan
                n = attrs.get("uncertainty_n_samples", "?")
                panels.append((f"{item['model']} output / uncertainty\n"
                               f"{attrs.get('uncertainty_method', '')}, {n} samples", z,
                               "significance"))
        path = Path(out_dir) / f"{obsid}_{sid}.png"
        title = f"{obsid} {sid} - count rate, asinh scale"
        written.append(quicklook_png(panels, path, title=title))
    logger.info("wrote %d quicklooks of %s to %s", len(written), obsid, out_dir)
    return written
