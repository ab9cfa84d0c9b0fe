"""Export of stored images: FITS files with the sky WCS, and quicklook PNGs.

The images live on the EPIC-pn DET grid. DET -> sky pixels is a rotation by the position
angle (:func:`xsa_enhance.instrument.geometry.det_to_sky`) and sky pixels -> RA/Dec the
gnomonic projection about the pointing, so every exported image carries an exact linear
``RA---TAN``/``DEC--TAN`` WCS (CD matrix) as its primary WCS, and the DET coordinates as
the alternate WCS ``L`` (evselect's physical coordinates).

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
from xsa_enhance.instrument.grid import DetGrid, grid_for_factor
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["sky_wcs_header", "export_fits", "export_png", "quicklook_png", "select_images",
           "SIGNIFICANCE_VMAX", "uncertainty_hdu"]

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


def uncertainty_hdu(sigma: np.ndarray, attrs: Any, wcs_header: Any = None, *,
                    exposure_s: float) -> Any:
    """The ``UNCERTAINTY`` image extension: 1-sigma per pixel (float32, counts for
    ``exposure_s``), the image's WCS and the provenance of the estimate.

    Parameters
    ----------
    sigma : numpy.ndarray
        The uncertainty (``EnhancedImage.uncertainty`` or a stored product's array).
    attrs : mapping
        Provenance with the ``uncertainty_*`` keys of
        :func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`.
    wcs_header : mapping, optional
        WCS keywords of the primary image.
    exposure_s : float
        Exposure the counts (and sigma) correspond to.
    """
    from astropy.io import fits

    hdr = fits.Header()
    if wcs_header is not None:
        for k, v in dict(wcs_header).items():
            hdr[k] = v
    hdr["BUNIT"] = ("count", "1-sigma uncertainty of the counts per pixel")
    hdr["EXPOSURE"] = (float(exposure_s), "[s] exposure the counts correspond to")
    hdr["UNCMETH"] = (str(attrs.get("uncertainty_method", "")), "resampling method")
    hdr["UNCNSAMP"] = (int(attrs.get("uncertainty_n_samples") or 0), "resamples of the input")
    seed = attrs.get("uncertainty_seed")
    hdr["UNCSEED"] = (seed if isinstance(seed, int) else str(seed), "seed of the resampling")
    cal = str(attrs.get("uncertainty_calibration", ""))
    hdr["UNCCAL"] = (cal[:68], "calibration of sigma") if len(cal) <= 40 else cal[:68]
    key = attrs.get("uncertainty_calibration_key")
    if key:
        hdr["UNCCALK"] = str(key)[:68]
    if attrs.get("uncertainty_smooth_px") is not None:
        hdr["UNCSMOO"] = (float(attrs["uncertainty_smooth_px"]),
                          "[input px] bootstrap smoothing")
    hdr["COMMENT"] = ("1-sigma per output pixel: the input's Poisson noise run through the "
                      "network, calibrated on simulations; see docs/uncertainty.md. Does not "
                      "capture features the network invents for every resample.")
    return fits.ImageHDU(np.asarray(sigma, dtype=np.float32), header=hdr, name="UNCERTAINTY")


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


def _image(store: ProductStore, obsid: str, item: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any], DetGrid]:
    r = _read(store, obsid, item)
    return r["counts"], r["attrs"], r["grid"]


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
        wcs: dict[str, Any] = {}
        if None not in (ra, dec, pa):
            wcs = sky_wcs_header(grid, ra_pnt=ra, dec_pnt=dec, pa_pnt=pa)
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


#: Upper end of the significance (output / uncertainty) colour scale of quicklooks.
SIGNIFICANCE_VMAX: float = 10.0


def quicklook_png(
    images: Sequence[tuple[str, np.ndarray] | tuple[str, np.ndarray, str]],
    path: str | os.PathLike[str], *, title: str = "",
    colorbar_label: str = "count rate (ct/s per 4\" pixel), asinh scale",
) -> Path:
    """Save images side by side as a PNG, on one asinh scale set by the first image, each
    with a colour bar labelled in physical units.

    Parameters
    ----------
    images : sequence of (label, array) or (label, array, kind)
        Images to show (e.g. count rates); values are converted to per-4-arcsec-pixel
        area, so 1x and 2x grids share the scale. ``kind`` ``"significance"`` shows a
        significance map (``output / uncertainty``, NaN blank) on its own linear scale
        from 0 to :data:`SIGNIFICANCE_VMAX`, with a colour bar.
    path : path-like
        Output PNG.
    title : str
        Figure title.
    colorbar_label : str
        Label of the colour bars of the image panels (their ticks are in the images' units,
        per 4-arcsec pixel).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(images))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9), squeeze=False)
    hi = None
    for ax, panel in zip(axes[0], images):
        label, img = panel[0], panel[1]
        if len(panel) > 2 and panel[2] == "significance":  # type: ignore[misc]
            im = ax.imshow(np.asarray(img, dtype=float), origin="lower", cmap="viridis",
                           vmin=0.0, vmax=SIGNIFICANCE_VMAX, interpolation="nearest")
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, extend="max")
            cb.ax.axhline(3.0, color="w", lw=1.2)
            cb.ax.tick_params(labelsize=7)
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        img = np.asarray(img, dtype=float)
        # per 4" pixel area so 1x and 2x images share a scale
        img = img * (img.shape[0] / 411.0) ** 2  # a 2" pixel is a quarter of a 4" one
        if hi is None:
            hi = float(np.nanpercentile(img[img > 0], 99.5)) if np.any(img > 0) else 1.0
        soft = max(hi * 0.05, 1e-9)
        im = ax.imshow(np.arcsinh(img / soft), origin="lower", cmap="magma",
                       vmin=0, vmax=np.arcsinh(20.0))
        # ticks in physical units: the asinh-stretched values mapped back to the rate
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        ticks = [v for v in (0.0, 1.0, 3.0, 10.0, 20.0)]
        cb.set_ticks([float(np.arcsinh(v)) for v in ticks])
        cb.set_ticklabels([f"{v * soft:.2g}" for v in ticks])
        cb.set_label(colorbar_label, fontsize=7)
        cb.ax.tick_params(labelsize=6)
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
