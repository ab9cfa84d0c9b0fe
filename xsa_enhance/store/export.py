"""Export of stored images: FITS files with the sky WCS, and quicklook PNGs.

The images live on the EPIC-pn DET grid. DET -> sky pixels is a rotation by the position
angle (:func:`xsa_enhance.instrument.geometry.det_to_sky`) and sky pixels -> RA/Dec the
gnomonic projection about the pointing, so every exported image carries an exact linear
``RA---TAN``/``DEC--TAN`` WCS (CD matrix) as its primary WCS, and the DET coordinates as
the alternate WCS ``L`` (evselect's physical coordinates).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.errors import InputFileError
from xsa_enhance.instrument.grid import DetGrid, grid_for_factor
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["sky_wcs_header", "export_fits", "export_png", "quicklook_png", "select_images"]

logger = logging.getLogger(__name__)


def sky_wcs_header(grid: DetGrid, *, ra_pnt: float, dec_pnt: float, pa_pnt: float) -> dict[str, Any]:
    """FITS keywords of the sky WCS of an image on a DET grid.

    Parameters
    ----------
    grid : DetGrid
        The image grid.
    ra_pnt, dec_pnt, pa_pnt : float
        Pointing and position angle in degrees.

    Returns
    -------
    dict
        ``CTYPEi``, ``CRVALi``, ``CRPIXi``, ``CDi_j``, ``CUNITi``, ``RADESYS``, ``EQUINOX``
        plus the DET alternate WCS (``...L``).
    """
    from xsa_enhance.instrument.geometry import SKY_PIXEL_DEG

    t = np.deg2rad(float(pa_pnt))
    c, s = float(np.cos(t)), float(np.sin(t))
    b = float(grid.binsize)
    # image pixel (1-based) whose centre is DET (0, 0): the pointing direction
    crpix1 = (0.0 - grid.x_edge0) / b + 0.5
    crpix2 = (0.0 - grid.y_edge0) / b + 0.5
    p = float(SKY_PIXEL_DEG)
    header: dict[str, Any] = {
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRVAL1": float(ra_pnt),
        "CRVAL2": float(dec_pnt),
        "CRPIX1": crpix1,
        "CRPIX2": crpix2,
        "CD1_1": -p * c * b,
        "CD1_2": p * s * b,
        "CD2_1": p * s * b,
        "CD2_2": p * c * b,
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
    }
    header.update(grid.det_wcs_keywords(alt="L"))
    header["WCSNAMEL"] = "PHYSICAL"
    return header


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
        Model names to keep (default: all); an empty sequence keeps no product.
    inputs : bool
        Include the un-enhanced slice images.

    Returns
    -------
    list of dict
        ``{"kind": "input"|"product", "slice_id", "model", "clamp", "path"}``.

    Raises
    ------
    InputFileError
        When the observation is not in the store's catalogs.
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
        for r in prods:
            sid = str(r["slice_id"])
            if not slice_ok(sid, lengths.get(sid, -1)):
                continue
            if models is not None and str(r["model"]) not in models:
                continue
            out.append({"kind": "product", "slice_id": sid, "model": str(r["model"]),
                        "clamp": str(r["clamp_mode"]), "path": str(r["store_path"])})
    if slices and not out:
        raise InputFileError(store.url, f"no image of {obsid} matches slices {list(slices)}")
    return out


def _image(store: ProductStore, obsid: str, item: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any], DetGrid]:
    if item["kind"] == "input":
        data = store.read_slice_input(obsid, item["slice_id"])
        return data.counts, data.attrs, grid_for_factor(1)
    prod = store.read_product(obsid, item["slice_id"], item["model"], item["clamp"])
    factor = 2 if str(prod.attrs.get("grid", "1x")).startswith("2") else 1
    return prod.counts, prod.attrs, grid_for_factor(factor)


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
        data, attrs, grid = _image(store, obsid, item)
        hdr = fits.Header()
        ra, dec, pa = attrs.get("ra_pnt"), attrs.get("dec_pnt"), attrs.get("pa_pnt")
        if None not in (ra, dec, pa):
            for k, v in sky_wcs_header(grid, ra_pnt=ra, dec_pnt=dec, pa_pnt=pa).items():
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
        path = out / f"{_name(obsid, item)}.fits"
        fits.PrimaryHDU(data=np.asarray(data), header=hdr).writeto(path, overwrite=overwrite)
        written.append(path)
    logger.info("exported %d FITS images of %s to %s", len(written), obsid, out)
    return written


def quicklook_png(
    images: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Save images side by side as a PNG, on one asinh scale set by the first image.

    Parameters
    ----------
    images : sequence of (label, array)
        Images to show (e.g. count rates); values are converted to per-4-arcsec-pixel
        area, so 1x and 2x grids share the scale.
    path : path-like
        Output PNG.
    title : str
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(images))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9), squeeze=False)
    hi = None
    for ax, (label, img) in zip(axes[0], images):
        img = np.asarray(img, dtype=float)
        # per 4" pixel area so 1x and 2x images share a scale
        img = img * (img.shape[0] / 411.0) ** 2  # a 2" pixel is a quarter of a 4" one
        if hi is None:
            hi = float(np.nanpercentile(img[img > 0], 99.5)) if np.any(img > 0) else 1.0
        ax.imshow(np.arcsinh(img / max(hi * 0.05, 1e-9)), origin="lower", cmap="magma",
                  vmin=0, vmax=np.arcsinh(20.0))
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[0][len(images):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
    else:
        fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def export_png(
    store: ProductStore | str | os.PathLike[str],
    obsid: str,
    out_dir: str | os.PathLike[str],
    *,
    slices: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> list[Path]:
    """Write one quicklook PNG per slice: the input next to each of its products.

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
            data, attrs, _ = _image(store, obsid, item)
            label = "input" if item["kind"] == "input" else f"{item['model']} ({item['clamp']})"
            exposure = float(attrs.get("output_exposure_s", attrs.get("exposure_s")) or 1.0)
            label += f"\n{exposure / 1000:.1f} ks, {np.asarray(data).sum():.0f} counts"
            panels.append((label, np.asarray(data, dtype=float) / exposure))
        path = Path(out_dir) / f"{obsid}_{sid}.png"
        title = f"{obsid} {sid} - count rate, asinh scale"
        written.append(quicklook_png(panels, path, title=title))
    logger.info("wrote %d quicklooks of %s to %s", len(written), obsid, out_dir)
    return written
