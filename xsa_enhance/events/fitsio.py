"""FITS export and import of slice images.

File layout written by :func:`write_image_fits`:

- primary HDU: the counts (int32, ``(ny, nx)``) with ``OBS_ID``, ``EXPIDSTR``, ``EXPOSURE``
  (s, the slice's exact exposure), ``PIMIN``/``PIMAX`` (band, eV), ``SLCTEXPR`` (screening and
  band, evselect's keyword), ``XSAEXPR`` (screening only), ``SLICELEN`` (ks; 0 for the whole
  clean exposure), ``NSLICES``/``SLICEIDX`` (0-based), ``GRIDNAME``/``BINSIZE``, pointing and
  header facts of the event list; the two WCS of :mod:`xsa_enhance.formats.skywcs` (the sky
  WCS about the projection centre of the event list, omitted when the pointing is unknown, in
  which case the primary WCS is the DET one; and the physical WCS ``L``: DETX/DETY).
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
from pathlib import Path

import numpy as np

from xsa_enhance.atomicio import atomic_path
from xsa_enhance.errors import InputFileError
from xsa_enhance.events.types import ObservationMeta, SliceImage
from xsa_enhance.formats.skywcs import det_wcs_cards as _det_wcs_cards
from xsa_enhance.formats.skywcs import projection_centre, sky_wcs_header
from xsa_enhance.instrument.grid import DET_UNIT_ARCSEC, DetGrid

__all__ = ["write_image_fits", "read_image_fits"]

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


def _wcs_cards(grid: DetGrid, meta: ObservationMeta | None) -> list[tuple[str, object, str]]:
    centre = None
    if meta is not None:
        centre = projection_centre(
            {**meta.extra, "RA_PNT": meta.ra_pnt, "DEC_PNT": meta.dec_pnt, "PA_PNT": meta.pa_pnt}
        )
    cards: list[tuple[str, object, str]] = []
    if centre is not None:
        ra, dec, pa = centre
        for k, v in sky_wcs_header(grid, ra=ra, dec=dec, pa=pa).items():
            cards.append((k, v, "approx. sky WCS from pointing and PA_PNT"))
    cards.extend(_det_wcs_cards(grid, primary=centre is None))
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
    with atomic_path(out) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True, checksum=True)
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
