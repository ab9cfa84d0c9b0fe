"""Image-level simulation: Poisson count images of the field components on the DET grids.

The training pairs of the paper are images, not event lists, so they are made directly on the
image grids (much faster than events, same instrument model):

* the *intrinsic* component (extended source or AGN) is a rate image on the 2x grid,
  multiplied by the vignetting at the true positions;
* the *input* (1x grid): convolved with the full PSF on the 2x grid, then rebinned to 4"
  pixels (so the input keeps where inside a 4" pixel the flux falls, as a real detector
  does), multiplied by the
  fraction of each pixel covered by good detector pixels and by the binary detector mask
  (zero outside it, as real images before the models), times the exposure, Poisson-sampled;
* the SR *target* (2x grid): convolved with the PSF with every length halved, multiplied by
  the 2x coverage and mask, times the target exposure, Poisson-sampled, no background;
* the DN *target* (1x grid): as the input with the longer exposure (an independent draw).

Targets are Poisson-sampled by default (``target_noise="poisson"``, the paper's set-up). With
``target_noise="none"`` they hold the *expected* counts instead (float, noiseless): the input is
drawn exactly as before from the same random stream, and a model trained against expectations
learns the conditional mean without the target's shot noise in its gradients.

Besides the paper's three components there is an optional ``"points"`` component: a few dozen
unabsorbed point sources per field with count rates drawn log-uniformly over
:data:`POINTS_RATE_RANGE` (10 to 1000 counts in 20 ks). The Moretti AGN with the paper's
absorption factor give almost no sources that bright, so a model trained on them alone never
sees a bright point source to sharpen; this component covers the flux range of the PSF test.

The PSF is the on-axis 1 keV PSF everywhere (no off-axis or energy dependence at image
level; the event simulator has both). Background images are the expected particle + sky rate
(:func:`xsa_enhance.instrument.background.background_rate_map`), scaled per sample by random
factors (particle 0.7-1.5, sky 0.7-1.3), Poisson-sampled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from xsa_enhance.instrument.background import PARTICLE_RATE, SKY_RATE, background_rate_map
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X, DetGrid
from xsa_enhance.instrument.mask import detector_mask, mask_coverage
from xsa_enhance.instrument.psf import PSF_HANDBOOK, KingPSF, psf_kernel
from xsa_enhance.instrument.vignetting import vignetting_map
from xsa_enhance.simulate.sources import draw_agn, draw_extended

__all__ = [
    "ALL_COMPONENTS",
    "COMPONENTS",
    "KINDS",
    "POINTS_PER_FIELD",
    "POINTS_RATE_RANGE",
    "SIMULATOR_REVISION",
    "TARGET_NOISE",
    "ComponentPair",
    "extended_rate_map",
    "poisson_image",
    "ImageConfig",
    "PointSourceGrid",
    "config_for_kind",
    "render_point_sources",
    "simulate_component",
    "simulate_point_source_grid",
]

logger = logging.getLogger(__name__)

#: Components simulated separately and summed at load time (the paper's three).
COMPONENTS: tuple[str, ...] = ("extended", "agn", "background")
#: Every component the simulator knows, including the optional bright point sources.
ALL_COMPONENTS: tuple[str, ...] = (*COMPONENTS, "points")
#: Target noise models: Poisson-sampled counts, or the expected counts (noiseless).
TARGET_NOISE: tuple[str, ...] = ("poisson", "none")
#: Mean number of sources of the ``points`` component per field (Poisson-distributed).
POINTS_PER_FIELD: float = 40.0
#: On-axis count-rate range (counts/s) of the ``points`` component, drawn log-uniformly.
POINTS_RATE_RANGE: tuple[float, float] = (5e-4, 5e-2)
#: Revision of the image-level simulator, recorded in every training set. Revision 2 blurs the
#: input with the PSF on the 2x grid before rebinning it to 4" pixels; revision 1 rebinned first,
#: which erased the sub-pixel position of every source from the SR inputs (but not from the
#: targets), so no network could learn to sharpen point sources below the 4" pixel.
SIMULATOR_REVISION: int = 2
#: Kinds of training set.
KINDS: tuple[str, ...] = ("sr", "dn")


@dataclass(frozen=True)
class ImageConfig:
    """What an input/target pair is.

    Parameters
    ----------
    kind : str
        ``"sr"`` (super-resolution) or ``"dn"`` (de-noising).
    input_exposure_s, target_exposure_s : float
        Exposures of input and target.
    factor : int
        Target pixels per input pixel and axis (2 for SR, 1 for DN).
    target_background : bool
        Whether targets contain background (DN yes, SR no).
    psf : KingPSF
        Input PSF; the target PSF is it scaled by ``1 / factor``.
    target_noise : {"poisson", "none"}
        Poisson-sampled target counts, or the expected counts.
    points_rate_range : tuple of float
        On-axis count-rate range (counts/s) of the ``points`` component (default
        :data:`POINTS_RATE_RANGE`).
    """

    kind: str
    input_exposure_s: float
    target_exposure_s: float
    factor: int
    target_background: bool
    psf: KingPSF = PSF_HANDBOOK
    target_noise: str = "poisson"
    points_rate_range: tuple[float, float] = POINTS_RATE_RANGE

    @property
    def target_grid(self) -> DetGrid:
        """Grid of the targets."""
        return GRID_2X if self.factor == 2 else GRID_1X

    @property
    def target_psf(self) -> KingPSF:
        """PSF of the targets."""
        return self.psf.with_scale(1.0 / self.factor)


def config_for_kind(
    kind: str, *, psf: KingPSF = PSF_HANDBOOK, target_noise: str = "poisson"
) -> ImageConfig:
    """The paper's configuration: SR 20 ks -> 100 ks at 2x without background; DN 20 -> 50 ks.

    ``target_noise`` is ``"poisson"`` (the paper) or ``"none"`` (expected target counts).
    """
    if target_noise not in TARGET_NOISE:
        raise ValueError(f"unknown target noise {target_noise!r}; expected one of {TARGET_NOISE}")
    if kind == "sr":
        return ImageConfig("sr", 20000.0, 100000.0, 2, False, psf, target_noise)
    if kind == "dn":
        return ImageConfig("dn", 20000.0, 50000.0, 1, True, psf, target_noise)
    raise ValueError(f"unknown training-set kind {kind!r}; expected 'sr' or 'dn'")


@dataclass
class ComponentPair:
    """One simulated component: Poisson counts of input and target, and what was drawn.

    ``input_expected`` is the expectation of ``input`` (counts): what ``input`` is a Poisson
    draw of, so that a brighter version of the same sky can be drawn exactly.
    """

    input: np.ndarray
    target: np.ndarray | None
    meta: dict = field(default_factory=dict)
    input_expected: np.ndarray | None = None


@lru_cache(maxsize=8)
def _kernel_fft(psf: KingPSF, pixel_arcsec: float, shape: tuple[int, int]) -> tuple:
    k = psf_kernel(psf, pixel_arcsec=pixel_arcsec)
    r = k.shape[0] // 2
    fshape = (sfft.next_fast_len(shape[0] + 2 * r, real=True),
              sfft.next_fast_len(shape[1] + 2 * r, real=True))
    kf = sfft.rfft2(k.astype(np.float32), s=fshape)
    return kf, fshape, r


def _convolve(image: np.ndarray, psf: KingPSF, pixel_arcsec: float) -> np.ndarray:
    kf, fshape, r = _kernel_fft(psf, float(pixel_arcsec), image.shape)
    out = sfft.irfft2(sfft.rfft2(image.astype(np.float32), s=fshape) * kf, s=fshape)
    out = out[r:r + image.shape[0], r:r + image.shape[1]]
    return np.maximum(out, np.float32(0.0))


@lru_cache(maxsize=8)
def _polyphase_fft(psf: KingPSF, fine_arcsec: float, shape: tuple[int, int]) -> tuple:
    # the 2x-grid kernel k split by where inside the coarse pixel a fine pixel lies: a fine
    # pixel (2j + a, 2i + b) reaches coarse pixel m through K_ab[m - j] = sum over c, d in {0, 1}
    # of k[2(m - j) + c - a, ...], the fine kernel summed over the fine pixels of the coarse one
    k = psf_kernel(psf, pixel_arcsec=fine_arcsec)
    r = k.shape[0] // 2
    rs = r // 2 + 1
    off = 2 * rs + 1
    pad = np.zeros((4 * rs + 4, 4 * rs + 4))
    pad[off - r:off + r + 1, off - r:off + r + 1] = k
    e = np.arange(-rs, rs + 1)
    fshape = (sfft.next_fast_len(shape[0] + 2 * rs, real=True),
              sfft.next_fast_len(shape[1] + 2 * rs, real=True))
    kfs = []
    for a in (0, 1):
        for b in (0, 1):
            kab = sum(pad[np.ix_(2 * e + c - a + off, 2 * e + d - b + off)]
                      for c in (0, 1) for d in (0, 1))
            kfs.append(((a, b), sfft.rfft2(kab.astype(np.float32), s=fshape)))
    return tuple(kfs), fshape, rs


def _blur_rebin2(image2x: np.ndarray, psf: KingPSF, fine_arcsec: float) -> np.ndarray:
    """``_rebin2(_convolve(image2x, psf, fine_arcsec))`` computed on the coarse grid.

    The four polyphase parts of the fine image (one per position inside a coarse pixel) are
    each convolved with their own coarse kernel and summed in Fourier space: the same result
    (to float32 rounding) at about a third of the cost of the fine-grid convolution.
    """
    ny, nx = image2x.shape[0] // 2, image2x.shape[1] // 2
    kfs, fshape, r = _polyphase_fft(psf, float(fine_arcsec), (ny, nx))
    acc = None
    for (a, b), kf in kfs:
        part = sfft.rfft2(image2x[a::2, b::2].astype(np.float32), s=fshape) * kf
        acc = part if acc is None else acc + part
    out = sfft.irfft2(acc, s=fshape)[r:r + ny, r:r + nx]
    return np.maximum(out, np.float32(0.0))


@lru_cache(maxsize=4)
def _vign(grid: DetGrid) -> np.ndarray:
    v = vignetting_map(grid).astype(np.float32)
    v.setflags(write=False)
    return v


@lru_cache(maxsize=4)
def _cov(grid: DetGrid) -> np.ndarray:
    # exposure fraction of each pixel, zero outside the (binary) detector mask: images are
    # multiplied by the mask before the models, as the pipeline does with real images
    c = (mask_coverage(grid) * detector_mask(grid)).astype(np.float32)
    c.setflags(write=False)
    return c


def poisson_image(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray:
    """Independent Poisson counts with means ``lam``, as float32 (exact integers)."""
    return rng.poisson(lam).astype(np.float32)


def _rebin2(img: np.ndarray) -> np.ndarray:
    ny, nx = img.shape
    return img.reshape(ny // 2, 2, nx // 2, 2).sum(axis=(1, 3))


def _observe_intrinsic(
    rng: np.random.Generator, rate2x: np.ndarray, config: ImageConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input counts, target counts and expected input counts of an intrinsic (vignetted) rate
    image on the 2x grid."""
    cov1 = _cov(GRID_1X)
    # the sky is blurred by the PSF at full resolution and only then binned into 4" pixels:
    # convolving on the 2x grid before rebinning keeps where inside a 4" pixel the flux falls
    # (revision 1 rebinned first, so all four 2" positions in a 4" pixel gave the same input)
    inp = _blur_rebin2(rate2x, config.psf, GRID_2X.pixel_arcsec) * cov1
    inp_expected = inp * config.input_exposure_s
    inp_counts = poisson_image(rng, inp_expected)
    if config.factor == 2:
        cov2 = _cov(GRID_2X)
        tgt = _convolve(rate2x, config.target_psf, GRID_2X.pixel_arcsec) * cov2
    else:
        tgt = inp
    return (inp_counts, _target_counts(rng, tgt * config.target_exposure_s, config),
            np.asarray(inp_expected, dtype=np.float32))


def _target_counts(rng: np.random.Generator, lam: np.ndarray, config: ImageConfig) -> np.ndarray:
    """Target counts with expectation ``lam``: Poisson-sampled, or ``lam`` itself."""
    if config.target_noise == "none":
        return np.asarray(lam, dtype=np.float32)
    return poisson_image(rng, lam)


def _point_rate_image(detx: np.ndarray, dety: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Intrinsic (vignetted) rate image on the 2x grid of point sources at DET positions."""
    ix, iy = GRID_2X.pixel_index(detx, dety)
    ok = (ix >= 0) & (ix < GRID_2X.nx) & (iy >= 0) & (iy < GRID_2X.ny)
    rate2x = np.zeros(GRID_2X.shape, dtype=np.float32)
    np.add.at(rate2x, (iy[ok], ix[ok]), np.asarray(rate)[ok].astype(np.float32))
    return rate2x * _vign(GRID_2X)


def simulate_component(
    component: str, rng: np.random.Generator, config: ImageConfig
) -> ComponentPair:
    """Simulate one sample of a component.

    Parameters
    ----------
    component : str
        ``"extended"``, ``"agn"`` or ``"background"``.
    rng : numpy.random.Generator
        Random generator (one per sample for reproducibility).
    config : ImageConfig
        Kind and exposures.

    Returns
    -------
    ComponentPair
        ``target`` is None for the SR background (targets have no background: zeros).
    """
    if component == "points":
        n = int(rng.poisson(POINTS_PER_FIELD))
        lo, hi = config.points_rate_range
        rate = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        detx = rng.uniform(GRID_1X.x_edges[0], GRID_1X.x_edges[-1], n)
        dety = rng.uniform(GRID_1X.y_edges[0], GRID_1X.y_edges[-1], n)
        inp, tgt, lam = _observe_intrinsic(rng, _point_rate_image(detx, dety, rate), config)
        return ComponentPair(inp, tgt, {"n_sources": n, "total_rate": float(rate.sum())}, lam)
    if component == "extended":
        src = draw_extended(rng, grid=GRID_1X, reference_exposure_s=config.input_exposure_s)
        rate2x = src.rate_image(GRID_2X) * _vign(GRID_2X)
        inp, tgt, lam = _observe_intrinsic(rng, rate2x, config)
        meta = {"kind": src.kind, **{k: (float(v) if isinstance(v, (float, np.floating)) else v)
                                      for k, v in src.params.items()}}
        return ComponentPair(inp, tgt, meta, lam)
    if component == "agn":
        agn = draw_agn(rng, grid=GRID_1X)
        rate2x = _point_rate_image(agn.detx, agn.dety, agn.rate)
        inp, tgt, lam = _observe_intrinsic(rng, rate2x, config)
        meta = {"n_sources": int(len(agn)), "absorption": float(agn.absorption),
                "total_rate": float(agn.rate.sum())}
        return ComponentPair(inp, tgt, meta, lam)
    if component == "background":
        fp = float(rng.uniform(0.7, 1.5))
        fs = float(rng.uniform(0.7, 1.3))
        rate = background_rate_map(GRID_1X, particle_rate=PARTICLE_RATE * fp,
                                   sky_rate=SKY_RATE * fs, apply_mask=False) * _cov(GRID_1X)
        lam = rate * config.input_exposure_s
        inp = poisson_image(rng, lam)
        tgt = None
        if config.target_background:
            tgt = _target_counts(rng, rate * config.target_exposure_s, config)
        return ComponentPair(inp, tgt, {"particle_factor": fp, "sky_factor": fs},
                             np.asarray(lam, dtype=np.float32))
    raise ValueError(f"unknown component {component!r}; expected one of {ALL_COMPONENTS}")


def render_point_sources(
    grid: DetGrid,
    detx: np.ndarray,
    dety: np.ndarray,
    rates: np.ndarray,
    *,
    psf: KingPSF = PSF_HANDBOOK,
    radius_arcsec: float = 120.0,
    oversample: int = 5,
) -> np.ndarray:
    """Expected rate image (counts/s per pixel) of point sources, PSF integrated over pixels.

    Each source is rendered on a stamp around it by sub-sampling the (truncated, normalised)
    King profile ``oversample`` times per pixel and axis at the source's exact sub-pixel
    position; flux beyond ``radius_arcsec`` is dropped (a fraction ``1 - EE(radius)``).

    Parameters
    ----------
    grid : DetGrid
        Image grid.
    detx, dety, rates : array
        Source DET positions and count rates.
    psf : KingPSF
        The PSF (with its scale).
    radius_arcsec : float
        Stamp radius.
    oversample : int
        Sub-samples per pixel and axis.
    """
    out = np.zeros(grid.shape)
    pix = grid.pixel_arcsec
    half = int(np.ceil(radius_arcsec / pix))
    sub = (np.arange(oversample) + 0.5) / oversample
    for x, y, rate in zip(np.atleast_1d(detx), np.atleast_1d(dety), np.atleast_1d(rates)):
        ix, iy = grid.pixel_index(x, y)
        ix, iy = int(ix), int(iy)
        x0, x1 = max(ix - half, 0), min(ix + half + 1, grid.nx)
        y0, y1 = max(iy - half, 0), min(iy + half + 1, grid.ny)
        if x0 >= x1 or y0 >= y1:
            continue
        xs = grid.x_edge0 + grid.binsize * (np.arange(x0, x1)[:, None] + sub[None, :]).ravel()
        ys = grid.y_edge0 + grid.binsize * (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
        dx = (xs - x) * 0.05
        dy = (ys - y) * 0.05
        r = np.hypot(dx[None, :], dy[:, None])
        dens = psf.profile(r)
        stamp = dens.reshape(y1 - y0, oversample, x1 - x0, oversample).mean(axis=(1, 3))
        out[y0:y1, x0:x1] += rate * stamp * pix * pix
    return out


@dataclass(frozen=True)
class PointSourceGrid:
    """A lattice of point sources for the PSF test.

    Attributes
    ----------
    input_counts : ndarray, shape (411, 403)
        Poisson counts on the 1x grid (sources + background) for ``input_exposure_s``,
        multiplied by the detector mask coverage.
    target_expected : ndarray, shape (822, 806)
        Noiseless expected counts on the 2x grid (PSF halved, no background) for
        ``target_exposure_s``.
    positions : ndarray, shape (n, 2)
        True ``(y, x)`` positions in 1x pixel coordinates (0-based, pixel centres at integers).
        On the 2x grid they are at ``2 * p + 0.5``.
    rates : ndarray, shape (n,)
        Source count rates (counts/s, on-axis screened 0.5-2 keV, before vignetting).
    detx, dety : ndarray
        The same positions in DET units.
    input_exposure_s, target_exposure_s : float
    mask : ndarray of bool, shape (411, 403)
        The 1x detector mask.
    """

    input_counts: np.ndarray
    target_expected: np.ndarray
    positions: np.ndarray
    rates: np.ndarray
    detx: np.ndarray
    dety: np.ndarray
    input_exposure_s: float
    target_exposure_s: float
    mask: np.ndarray


def simulate_point_source_grid(
    *,
    rates: tuple[float, ...] = (5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2),
    spacing_px: int = 30,
    seed: int = 0,
    input_exposure_s: float = 20000.0,
    target_exposure_s: float = 100000.0,
    background: bool = True,
    vignetting: bool = False,
    psf: KingPSF = PSF_HANDBOOK,
    subpixel: bool = True,
) -> PointSourceGrid:
    """A grid of point sources: the 1x noisy input and the 2x noiseless target.

    Sources sit on a square lattice (``spacing_px`` 1x pixels apart) inside the detector
    mask, at random sub-pixel offsets when ``subpixel``; their rates cycle through ``rates``.

    Parameters
    ----------
    rates : tuple of float
        Count rates (counts/s) cycled over the lattice.
    spacing_px : int
        Lattice spacing in 1x pixels.
    seed : int
        Random seed (sub-pixel offsets, Poisson noise).
    input_exposure_s, target_exposure_s : float
        Exposures of input and target.
    background : bool
        Add the particle + sky background to the input.
    vignetting : bool
        Apply vignetting to the sources (off by default: every source has its nominal rate).
    psf : KingPSF
        Input PSF (the target uses it halved).
    subpixel : bool
        Random sub-pixel positions.

    Returns
    -------
    PointSourceGrid
    """
    rng = np.random.default_rng(seed)
    mask = detector_mask(GRID_1X)
    ny, nx = GRID_1X.shape
    pos = []
    for y in range(spacing_px // 2, ny - spacing_px // 2, spacing_px):
        for x in range(spacing_px // 2, nx - spacing_px // 2, spacing_px):
            h = 3
            if mask[max(y - h, 0):y + h + 1, max(x - h, 0):x + h + 1].all():
                pos.append((float(y), float(x)))
    p = np.array(pos, dtype=np.float64).reshape(-1, 2)
    if subpixel and len(p):
        p += rng.uniform(-0.5, 0.5, p.shape)
    r = np.resize(np.asarray(rates, dtype=np.float64), len(p))
    detx = GRID_1X.x_edge0 + (p[:, 1] + 0.5) * GRID_1X.binsize
    dety = GRID_1X.y_edge0 + (p[:, 0] + 0.5) * GRID_1X.binsize
    eff = r.copy()
    if vignetting:
        from xsa_enhance.instrument.vignetting import vignetting_det

        eff = eff * vignetting_det(detx, dety)
    cov1 = _cov(GRID_1X)
    cov2 = _cov(GRID_2X)
    inp = render_point_sources(GRID_1X, detx, dety, eff, psf=psf) * cov1
    if background:
        inp = inp + background_rate_map(GRID_1X, apply_mask=False) * cov1
    tgt = render_point_sources(GRID_2X, detx, dety, eff, psf=psf.with_scale(0.5),
                               radius_arcsec=60.0) * cov2
    return PointSourceGrid(
        input_counts=poisson_image(rng, inp * input_exposure_s),
        target_expected=tgt * target_exposure_s,
        positions=p,
        rates=r,
        detx=detx,
        dety=dety,
        input_exposure_s=float(input_exposure_s),
        target_exposure_s=float(target_exposure_s),
        mask=mask,
    )


def extended_rate_map(rng: np.random.Generator, *, kind: str | None = None,
                      psf: KingPSF = PSF_HANDBOOK) -> tuple[np.ndarray, dict]:
    """Expected observed count rate of one random extended source on the 1x grid.

    The source is drawn as for the training sets (:func:`draw_extended` with its 20 ks
    brightness range), vignetted, blurred by ``psf`` at 2" and binned to 4" pixels, times the
    exposure fraction of each pixel (zero outside the detector mask).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    kind : str, optional
        One of the extended kinds (cluster, group, snr, spiral, elliptical); random when None.
    psf : KingPSF
        Point-spread function.

    Returns
    -------
    rate : numpy.ndarray
        Counts/s per 1x pixel (float32).
    meta : dict
        The kind of source drawn.
    """
    src = draw_extended(rng, kind=kind, grid=GRID_1X)
    rate2x = src.rate_image(GRID_2X) * _vign(GRID_2X)
    return _blur_rebin2(rate2x, psf, GRID_2X.pixel_arcsec) * _cov(GRID_1X), {"kind": src.kind}
