"""FITS (and PNG quick-look) export of slice images.

File layout written by :func:`write_image_fits`:

- primary HDU: the counts (int32, ``(ny, nx)``) with ``OBS_ID``, ``EXPIDSTR``, ``EXPOSURE``
  (s, the slice's exact exposure), ``PIMIN``/``PIMAX`` (band, eV), ``SLCTEXPR`` (screening and
  band, evselect's keyword), ``XSAEXPR`` (screening only), ``SLICELEN`` (ks; 0 for the whole
  clean exposure), ``NSLICES``/``SLICEIDX`` (0-based), ``GRIDNAME``/``BINSIZE``, pointing and
  header facts of the event list; two WCS:

  * primary (no letter): an approximate sky WCS, ``RA---TAN``/``DEC--TAN`` with a ``CD``
    matrix. It uses the convention of :mod:`xsa_enhance.instrument.geometry` -- DET (0, 0) on
    the projection centre (``REFXCRVL``/``REFYCRVL`` when the event list has them, else
    ``RA_PNT``/``DEC_PNT``), the DET axes rotated on the sky by ``PA_PNT``, sky X growing to the
    West -- so it is exact for simulated data and good to about an arcminute (boresight offsets,
    attitude wobble) for real data. Omitted when the pointing is unknown, in which case the
    primary WCS is the DET one.
  * ``L`` (``WCSNAMEL='PHYSICAL'``) plus ``LTV``/``LTM``: pixel -> DETX/DETY as evselect
    writes it, so ds9's "physical" coordinates are DETX/DETY.

- ``MASK``: the detector mask (uint8, 1 = can record events), same WCS.
- ``GTI``: ``START``/``STOP`` of the slice (s).
- ``COUNTS2X``/``MASK2X``: the same on the 2x grid when present.

Writes go to a temporary file in the target directory and are renamed into place, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from xsa_enhance.errors import InputFileError
from xsa_enhance.events.types import ObservationMeta, SliceImage
from xsa_enhance.instrument.grid import DET_UNIT_ARCSEC, DetGrid

__all__ = ["write_image_fits", "read_image_fits", "sky_wcs_header", "write_image_png"]

logger = logging.getLogger(__name__)

_META_KEYS = {
    "INSTRUME": "instrume",
    "DATAMODE": "datamode",
    "SUBMODE": "submode",
    "FILTER": "filter",
    "DATE-OBS": "date_obs",
    "DATE-END": "date_end",
    "RA_PNT": "ra_pnt",
    "DEC_PNT": "dec_pnt",
    "PA_PNT": "pa_pnt",
}


def sky_wcs_header(
    grid: DetGrid, *, ra: float, dec: float, pa_deg: float
) -> dict[str, object]:
    """Approximate sky TAN WCS keywords for an image on a DET grid.

    The linear part is taken from :func:`xsa_enhance.instrument.geometry.det_to_sky` (so the
    DET -> sky convention lives in one place): DET (0, 0) sits on ``(ra, dec)``.

    Parameters
    ----------
    grid : DetGrid
        The image grid.
    ra, dec : float
        Projection centre (deg).
    pa_deg : float
        Position angle ``PA_PNT`` (deg).

    Returns
    -------
    dict
        ``WCSAXES``, ``CTYPEi``, ``CUNITi``, ``CRPIXi``, ``CRVALi``, ``CDi_j``, ``RADESYS``,
        ``EQUINOX``.
    """
    from xsa_enhance.instrument.geometry import SKY_PIXEL_DEG, det_to_sky

    x0, y0 = det_to_sky(0.0, 0.0, pa_deg=pa_deg)
    x1, y1 = det_to_sky(1.0, 0.0, pa_deg=pa_deg)
    x2, y2 = det_to_sky(0.0, 1.0, pa_deg=pa_deg)
    # sky pixel -> intermediate world coords (deg): xi = -(X - ref) * s, eta = (Y - ref) * s
    s = SKY_PIXEL_DEG * grid.binsize  # per image pixel
    cd11 = -float(x1 - x0) * s
    cd12 = -float(x2 - x0) * s
    cd21 = float(y1 - y0) * s
    cd22 = float(y2 - y0) * s
    # image pixel p (1-based) is centred at DET x_edge0 + binsize * (p - 0.5)
    crpix1 = (0.0 - grid.x_edge0) / grid.binsize + 0.5
    crpix2 = (0.0 - grid.y_edge0) / grid.binsize + 0.5
    return {
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRPIX1": crpix1,
        "CRPIX2": crpix2,
        "CRVAL1": float(ra),
        "CRVAL2": float(dec),
        "CD1_1": cd11,
        "CD1_2": cd12,
        "CD2_1": cd21,
        "CD2_2": cd22,
        "RADESYS": "FK5",
        "EQUINOX": 2000.0,
    }


def _det_wcs_cards(grid: DetGrid, *, primary: bool) -> list[tuple[str, object, str]]:
    cards: list[tuple[str, object, str]] = []
    if primary:
        for k, v in grid.det_wcs_keywords(alt="").items():
            cards.append((k, v, "DET WCS (no sky pointing known)"))
    for k, v in grid.det_wcs_keywords(alt="L").items():
        cards.append((k, v, "physical WCS: pixel -> DETX/DETY"))
    cards.append(("WCSNAMEL", "PHYSICAL", "WCS L name"))
    cards.append(("WCSAXESL", 2, "No. of axes for WCS L"))
    # evselect's IRAF-style LTV/LTM: image = LTM * physical + LTV
    ltm = 1.0 / grid.binsize
    cards.append(("LTV1", 1.0 - ltm * (grid.x_edge0 + 0.5 * grid.binsize), ""))
    cards.append(("LTV2", 1.0 - ltm * (grid.y_edge0 + 0.5 * grid.binsize), ""))
    cards.append(("LTM1_1", ltm, ""))
    cards.append(("LTM1_2", 0.0, ""))
    cards.append(("LTM2_1", 0.0, ""))
    cards.append(("LTM2_2", ltm, ""))
    return cards


def _wcs_cards(grid: DetGrid, meta: ObservationMeta | None) -> list[tuple[str, object, str]]:
    sky = None
    if meta is not None:
        ra = meta.extra.get("REFXCRVL", meta.ra_pnt)
        dec = meta.extra.get("REFYCRVL", meta.dec_pnt)
        try:
            ra, dec, pa = float(ra), float(dec), float(meta.pa_pnt)
        except (TypeError, ValueError):
            ra = dec = pa = float("nan")
        if all(math.isfinite(v) for v in (ra, dec, pa)):
            sky = sky_wcs_header(grid, ra=ra, dec=dec, pa_deg=pa)
    cards: list[tuple[str, object, str]] = []
    if sky is not None:
        for k, v in sky.items():
            cards.append((k, v, "approx. sky WCS from pointing and PA_PNT"))
    cards.extend(_det_wcs_cards(grid, primary=sky is None))
    cards.append(("GRIDNAME", grid.name, "DET grid name"))
    cards.append(("BINSIZE", float(grid.binsize), "[DET units] pixel size (0.05 arcsec units)"))
    cards.append(("PIXSIZE", float(grid.binsize * DET_UNIT_ARCSEC), "[arcsec] pixel size"))
    return cards


def write_image_fits(image: SliceImage, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write a slice image as FITS (atomically: temporary file + rename).

    Parameters
    ----------
    image : SliceImage
        The image.
    path : str or path-like
        Output file.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    from astropy.io import fits

    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = image.meta
    primary = fits.PrimaryHDU(np.ascontiguousarray(image.counts, dtype=np.int32))
    h = primary.header
    h["TELESCOP"] = ("XMM", "mission")
    h["INSTRUME"] = ((meta.instrume if meta else "EPN"), "instrument")
    h["OBS_ID"] = (image.obsid, "observation identifier")
    h["EXPIDSTR"] = (image.expidstr, "exposure identifier")
    if meta is not None:
        for key, attr in _META_KEYS.items():
            if key == "INSTRUME":
                continue
            v = getattr(meta, attr)
            if isinstance(v, float) and not math.isfinite(v):
                continue
            if v != "":
                h[key] = v
        for key in ("OBJECT", "RA_NOM", "DEC_NOM", "MJDREF", "TIMESYS"):
            if key in meta.extra:
                h[key] = meta.extra[key]
    h["CONTENT"] = ("EPIC IMAGE", "counts image on the DET grid")
    h["HDUCLASS"] = "OGIP"
    h["HDUCLAS1"] = "IMAGE"
    h["HDUCLAS2"] = "TOTAL"
    h["BUNIT"] = ("count", "counts per pixel (not masked)")
    h["EXPOSURE"] = (float(image.exposure_s), "[s] exact exposure of this slice (sum of GTIs)")
    h["ONTIME"] = (float(image.exposure_s), "[s] sum of GTIs")
    if len(image.gtis):
        h["TSTART"] = (float(image.gtis[0, 0]), "[s] start of the first GTI")
        h["TSTOP"] = (float(image.gtis[-1, 1]), "[s] end of the last GTI")
    h["PIMIN"] = (int(image.band[0]), "[eV] lower band edge (included)")
    h["PIMAX"] = (int(image.band[1]), "[eV] upper band edge (included)")
    h["SLCTEXPR"] = (f"({image.expression}) && PI in [{image.band[0]}:{image.band[1]}]", "selection")
    h["XSAEXPR"] = (image.expression, "screening expression (without the band)")
    h["SLICELEN"] = (0.0 if image.length_ks is None else float(image.length_ks), "[ks] 0 = whole clean exposure")
    h["NSLICES"] = (int(image.n_slices), "number of slices of this length")
    h["SLICEIDX"] = (int(image.index), "0-based index of this slice")
    h["SLICELBL"] = (image.label, "slice label")
    for k, v, c in _wcs_cards(image.grid, meta):
        h[k] = (v, c)
    hdus = [primary]
    mask_hdu = fits.ImageHDU(np.asarray(image.mask, dtype=np.uint8), name="MASK")
    for k, v, c in _wcs_cards(image.grid, meta):
        mask_hdu.header[k] = (v, c)
    mask_hdu.header["COMMENT"] = "detector mask: 1 = pixel can record events"
    hdus.append(mask_hdu)
    gti = np.asarray(image.gtis, dtype=np.float64).reshape(-1, 2)
    gti_hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="START", format="D", unit="s", array=gti[:, 0]),
            fits.Column(name="STOP", format="D", unit="s", array=gti[:, 1]),
        ],
        name="GTI",
    )
    gti_hdu.header["HDUCLASS"] = "OGIP"
    gti_hdu.header["HDUCLAS1"] = "GTI"
    gti_hdu.header["HDUCLAS2"] = "STANDARD"
    hdus.append(gti_hdu)
    if image.counts_2x is not None:
        g2 = image.grid.scaled(2)
        c2 = fits.ImageHDU(np.asarray(image.counts_2x, dtype=np.int32), name="COUNTS2X")
        for k, v, c in _wcs_cards(g2, meta):
            c2.header[k] = (v, c)
        c2.header["BUNIT"] = "count"
        hdus.append(c2)
        if image.mask_2x is not None:
            m2 = fits.ImageHDU(np.asarray(image.mask_2x, dtype=np.uint8), name="MASK2X")
            for k, v, c in _wcs_cards(g2, meta):
                m2.header[k] = (v, c)
            hdus.append(m2)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True, checksum=True)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("wrote %s", out)
    return out


def _grid_from_header(p: Path, h) -> DetGrid:
    try:
        nx, ny = int(h["NAXIS1"]), int(h["NAXIS2"])
        b = float(h["CDELT1L"])
        x0 = float(h["CRVAL1L"]) - (float(h["CRPIX1L"]) - 0.5) * b
        y0 = float(h["CRVAL2L"]) - (float(h["CRPIX2L"]) - 0.5) * float(h["CDELT2L"])
    except KeyError as exc:
        raise InputFileError(p, f"not an xsa-enhance image: missing keyword {exc.args[0]}") from None
    return DetGrid(nx=nx, ny=ny, binsize=b, x_edge0=x0, y_edge0=y0, name=str(h.get("GRIDNAME", "")))


def read_image_fits(path: str | os.PathLike) -> SliceImage:
    """Read an image written by :func:`write_image_fits`.

    Parameters
    ----------
    path : str or path-like
        The FITS file.

    Returns
    -------
    SliceImage

    Raises
    ------
    InputFileError
        Missing, unreadable, or not an xsa-enhance image.
    """
    from astropy.io import fits

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such file")
    try:
        with fits.open(p, memmap=False) as hdul:
            h = hdul[0].header
            if hdul[0].data is None or h.get("NAXIS") != 2:
                raise InputFileError(p, "no 2-D image in the primary HDU")
            for key in ("OBS_ID", "EXPOSURE", "PIMIN", "PIMAX", "SLICELEN", "NSLICES", "SLICEIDX"):
                if key not in h:
                    raise InputFileError(p, f"not an xsa-enhance image: missing keyword {key}")
            grid = _grid_from_header(p, h)
            counts = np.asarray(hdul[0].data, dtype=np.int32)
            names = [x.name for x in hdul]
            mask = (
                np.asarray(hdul["MASK"].data, dtype=bool)
                if "MASK" in names
                else np.ones(grid.shape, dtype=bool)
            )
            if "GTI" in names and hdul["GTI"].data is not None:
                g = hdul["GTI"].data
                gtis = np.column_stack([np.asarray(g["START"], float), np.asarray(g["STOP"], float)])
            else:
                gtis = np.zeros((0, 2))
            counts_2x = np.asarray(hdul["COUNTS2X"].data, dtype=np.int32) if "COUNTS2X" in names else None
            mask_2x = np.asarray(hdul["MASK2X"].data, dtype=bool) if "MASK2X" in names else None
            extra = {k: h[k] for k in ("OBJECT", "RA_NOM", "DEC_NOM", "MJDREF", "TIMESYS") if k in h}
            if "CRVAL1" in h and str(h.get("CTYPE1", "")).startswith("RA"):
                extra["REFXCRVL"] = float(h["CRVAL1"])
                extra["REFYCRVL"] = float(h["CRVAL2"])
            meta_kwargs = {}
            for key, attr in _META_KEYS.items():
                if key in h:
                    meta_kwargs[attr] = h[key]
            meta = ObservationMeta(
                obsid=str(h["OBS_ID"]), expidstr=str(h.get("EXPIDSTR", "")), extra=extra, **meta_kwargs
            )
            length = float(h["SLICELEN"])
            expression = str(h.get("XSAEXPR", h.get("SLCTEXPR", "")))
    except InputFileError:
        raise
    except (OSError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise InputFileError(p, f"cannot read image ({type(exc).__name__}: {exc})") from None
    if counts.shape != grid.shape or mask.shape != grid.shape:
        raise InputFileError(p, f"counts {counts.shape} / mask {mask.shape} do not match the grid {grid.shape}")
    return SliceImage(
        obsid=meta.obsid,
        expidstr=meta.expidstr,
        length_ks=None if length == 0 else length,
        n_slices=int(h["NSLICES"]),
        index=int(h["SLICEIDX"]),
        gtis=gtis,
        exposure_s=float(h["EXPOSURE"]),
        counts=counts,
        mask=mask,
        grid=grid,
        band=(int(h["PIMIN"]), int(h["PIMAX"])),
        expression=expression,
        counts_2x=counts_2x,
        mask_2x=mask_2x,
        meta=meta,
    )


def write_image_png(image: SliceImage, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Quick-look PNG of a slice image (sqrt-scaled rate, mask outline) with matplotlib (Agg).

    Parameters
    ----------
    image : SliceImage
        The image.
    path : str or path-like
        Output PNG.
    title : str, optional
        Plot title (default: obsid, slice and exposure).

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 6.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    rate = image.counts / image.exposure_s if image.exposure_s > 0 else image.counts.astype(float)
    g = image.grid
    extent = (g.x_edges[0], g.x_edges[-1], g.y_edges[0], g.y_edges[-1])
    im = ax.imshow(np.sqrt(rate), origin="lower", extent=extent, cmap="magma", interpolation="nearest")
    ax.contour(
        image.mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.4,
        extent=extent, origin="lower",
    )  # fmt: skip
    ax.set_xlabel("DETX")
    ax.set_ylabel("DETY")
    ax.set_title(
        title
        or f"{image.obsid} {image.expidstr} {image.label}  {image.exposure_s:.0f} s  "
        f"{image.total_counts} counts"
    )
    fig.colorbar(im, ax=ax, label="sqrt(counts/s/pixel)")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
