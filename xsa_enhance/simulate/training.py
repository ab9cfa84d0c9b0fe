"""Training sets of simulated components in a Zarr v3 store, and a reader for the training code.

Layout (see ``docs/simulator.md``)::

    <store>/                      attrs: format, kind, factor, input_exposure_s,
                                         target_exposure_s, input_grid, target_grid, seed,
                                         n, splits, components, psf, simulator_version,
                                         units, background_target, target_noise
      mask_input                  (411, 403) bool   detector mask of the 1x grid
      mask_target                 (H, W) bool       detector mask of the target grid
      <split>/<component>/        split in train/val/test, component in extended/agn/background
                                  (and "points" when asked for)
          input                   (n_split, 411, 403) float32, one image per chunk
          target                  (n_split, H, W) float32, one image per chunk
                                  attrs of the group: "samples" (per-sample parameters)

Every image holds Poisson-sampled counts (integers stored as float32) of one component (targets
hold the expected counts instead when the set was written with ``target_noise="none"``), so
that a training sample is the *sum* of one input (target) per component, drawn independently
at load time. SR targets have no background: the background ``target`` array exists but is
never written, so it reads as zeros and takes no space. Sample ``i`` of a component is drawn
from ``SeedSequence([seed, component_index, i])`` (the index in ``ALL_COMPONENTS``) and the split is by index (the first 80 %
train, next 10 % validation, last 10 % test), so a set is reproducible and any sample can be
regenerated alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from xsa_enhance._version import __version__
from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.instrument.grid import GRID_1X
from xsa_enhance.instrument.mask import detector_mask
from xsa_enhance.instrument.psf import PSF_HANDBOOK, KingPSF
from xsa_enhance.simulate.images import (
    ALL_COMPONENTS,
    COMPONENTS,
    KINDS,
    SIMULATOR_REVISION,
    TARGET_NOISE,
    ImageConfig,
    config_for_kind,
    simulate_component,
)

__all__ = [
    "FORMAT",
    "SPLITS",
    "ComponentSet",
    "TrainingSet",
    "open_training_set",
    "split_sizes",
    "write_training_set",
]

logger = logging.getLogger(__name__)

#: Format tag in the store's attributes.
FORMAT: str = "xsa-enhance-training-set/1"
#: Splits and their fractions.
SPLITS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))

ProgressFn = Callable[..., Iterable[Any]]


def split_sizes(n: int) -> dict[str, int]:
    """Samples per split for ``n`` samples per component (80/10/10, at least 1 each if n >= 3)."""
    if n < 1:
        raise ConfigError(f"a training set needs at least one sample per component, got n={n}")
    n_val = int(round(0.1 * n))
    n_test = int(round(0.1 * n))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def _codec() -> BloscCodec:
    # Counts as float32: bit-shuffled zstd level 1 is ~2x smaller than the default at the
    # same speed.
    return BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")


def _json_safe(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.bool_,)):
            v = bool(v)
        out[k] = v
    return out


def write_training_set(
    store: str | os.PathLike,
    *,
    kind: str,
    n: int,
    seed: int,
    progress: ProgressFn | None = None,
    psf: KingPSF = PSF_HANDBOOK,
    overwrite: bool = False,
    workers: int = 1,
    components: tuple[str, ...] = COMPONENTS,
    target_noise: str = "poisson",
    points_rate_range: tuple[float, float] | None = None,
) -> Path:
    """Simulate ``n`` samples of each component and write them to a Zarr store.

    Parameters
    ----------
    store : path
        Folder of the Zarr v3 store (created).
    kind : {"sr", "dn"}
        Super-resolution (20 ks 1x with background -> 100 ks 2x, PSF halved, no background)
        or de-noising (20 ks -> 50 ks, 1x, both with background).
    n : int
        Samples per component, split 80/10/10 into train/val/test.
    seed : int
        Random seed.
    progress : callable, optional
        ``progress(iterable, total=..., desc=...)`` wrapper showing progress (the CLI's).
    psf : KingPSF
        Input PSF.
    overwrite : bool
        Replace an existing store.
    workers : int
        Worker processes. Each sample is its own chunk, so parallel writers never touch the
        same chunk; the result is identical for any number of workers.
    components : tuple of str
        Components to simulate: the paper's three (default), optionally with ``"points"``
        (bright unabsorbed point sources). A component's samples do not depend on which
        others are written.
    target_noise : {"poisson", "none"}
        Poisson-sampled targets (the paper) or the expected counts (noiseless). Inputs are
        identical either way for the same seed.
    points_rate_range : tuple of float, optional
        On-axis count-rate range (counts/s) of the ``points`` component (default
        :data:`~xsa_enhance.simulate.images.POINTS_RATE_RANGE`, 10-1,000 counts in 20 ks);
        recorded in the store's attributes.

    Returns
    -------
    Path
        The store.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown training-set kind {kind!r}; expected 'sr' or 'dn'")
    if target_noise not in TARGET_NOISE:
        raise ConfigError(f"unknown target noise {target_noise!r}; expected one of {TARGET_NOISE}")
    components = tuple(components)
    unknown = [c for c in components if c not in ALL_COMPONENTS]
    if unknown or "background" not in components or len(set(components)) != len(components):
        raise ConfigError(f"components must be distinct names from {ALL_COMPONENTS} including "
                          f"'background', got {list(components)}")
    sizes = split_sizes(int(n))
    path = Path(store)
    occupied = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if occupied and not overwrite:
        raise InputFileError(path, "already exists (use overwrite to replace it)")
    config = config_for_kind(kind, psf=psf, target_noise=target_noise)
    if points_rate_range is not None:
        lo, hi = (float(v) for v in points_rate_range)
        if not (0 < lo <= hi):
            raise ConfigError(f"points_rate_range must be 0 < low <= high, got {points_rate_range}")
        config = dataclasses.replace(config, points_rate_range=(lo, hi))
    tgrid = config.target_grid
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update(
        {
            "format": FORMAT,
            "kind": kind,
            "factor": config.factor,
            "input_exposure_s": config.input_exposure_s,
            "target_exposure_s": config.target_exposure_s,
            "input_grid": GRID_1X.name,
            "target_grid": tgrid.name,
            "input_shape": list(GRID_1X.shape),
            "target_shape": list(tgrid.shape),
            "seed": int(seed),
            "n": int(n),
            "splits": sizes,
            "components": list(components),
            "target_noise": target_noise,
            "points_rate_range": list(config.points_rate_range),
            "psf": psf.name,
            "psf_scale_target": 1.0 / config.factor,
            "target_background": config.target_background,
            "background_target": "present" if config.target_background else "zeros",
            "units": "counts" if target_noise == "poisson" else "counts (targets: expected)",
            "simulator_version": __version__,
            "simulator_revision": SIMULATOR_REVISION,
        }
    )
    root.create_array("mask_input", data=detector_mask(GRID_1X))
    # SR sets with expected targets also keep the expected inputs: an SR target cannot give
    # its input back (the PSFs differ), so a brighter sky can only be drawn from these
    with_expected = kind == "sr" and target_noise == "none"
    root.attrs["input_expected"] = with_expected
    root.create_array("mask_target", data=detector_mask(tgrid))
    arrays = {}
    for split, count in sizes.items():
        for comp in components:
            g = root.require_group(f"{split}/{comp}")
            ai = g.create_array(
                "input", shape=(count, *GRID_1X.shape), chunks=(1, *GRID_1X.shape),
                dtype="float32", fill_value=0.0, dimension_names=("sample", "y", "x"),
                compressors=_codec(),
            )
            at = g.create_array(
                "target", shape=(count, *tgrid.shape), chunks=(1, *tgrid.shape),
                dtype="float32", fill_value=0.0, dimension_names=("sample", "y", "x"),
                compressors=_codec(),
            )
            ae = None
            if with_expected:
                ae = g.create_array(
                    "input_expected", shape=(count, *GRID_1X.shape), chunks=(1, *GRID_1X.shape),
                    dtype="float32", fill_value=0.0, dimension_names=("sample", "y", "x"),
                    compressors=_codec(),
                )
            arrays[(split, comp)] = (g, ai, at, ae)

    jobs = []
    for comp in components:
        ci = ALL_COMPONENTS.index(comp)  # the seed stream of a component never changes
        i = 0
        for split, count in sizes.items():
            for j in range(count):
                jobs.append((ci, comp, i, split, j))
                i += 1
    samples: dict[tuple[str, str], list[dict]] = {k: [] for k in arrays}
    if workers <= 1:
        it: Iterable = jobs
        if progress is not None:
            it = progress(jobs, total=len(jobs), desc=f"simulating {kind} components")
        for job in it:
            split, comp, meta = _run_job(str(path), config, int(seed), job, arrays)
            samples[(split, comp)].append(meta)
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_run_job, str(path), config, int(seed), job, None)
                       for job in jobs]
            done: Iterable = cf.as_completed(futures)
            if progress is not None:
                done = progress(done, total=len(futures), desc=f"simulating {kind} components")
            results = [f.result() for f in done]
        for split, comp, meta in results:
            samples[(split, comp)].append(meta)
        for v in samples.values():
            v.sort(key=lambda m: m["index"])
    for key, (g, *_arrays) in arrays.items():
        g.attrs["samples"] = samples[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "consolidated metadata is not part of the v3 spec"
        zarr.consolidate_metadata(str(path))
    logger.info("wrote %s training set (%d per component) to %s", kind, n, path)
    return path


def _run_job(
    path: str, config: ImageConfig, seed: int, job: tuple, arrays: dict | None
) -> tuple[str, str, dict]:
    """Simulate and write one sample; opens the arrays itself when run in a worker."""
    ci, comp, i, split, j = job
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, ci, i]))
    pair = simulate_component(comp, rng, config)
    if arrays is not None:
        _, ai, at, ae = arrays[(split, comp)]
    else:
        g = zarr.open_group(path, mode="r+", path=f"{split}/{comp}")
        ai, at = g["input"], g["target"]
        ae = g["input_expected"] if "input_expected" in g else None
    ai[j] = pair.input
    if pair.target is not None:
        at[j] = pair.target
    if ae is not None and pair.input_expected is not None:
        ae[j] = pair.input_expected
    return split, comp, {"index": i, **_json_safe(pair.meta)}


@dataclass(frozen=True)
class ComponentSet:
    """One component of one split: lazy input and target arrays.

    Attributes
    ----------
    name, split : str
    input : zarr.Array
        ``(n, 411, 403)`` counts.
    target : zarr.Array
        ``(n, H, W)`` counts (zeros for the SR background).
    samples : list of dict
        Per-sample parameters.
    input_expected : zarr.Array or None
        ``(n, 411, 403)`` expected input counts, of which ``input`` is a Poisson draw (SR sets
        with expected targets; None otherwise).
    """

    name: str
    split: str
    input: Any
    target: Any
    samples: list
    input_expected: Any = None

    def __len__(self) -> int:
        return int(self.input.shape[0])


class TrainingSet:
    """A training set written by :func:`write_training_set` (use :func:`open_training_set`)."""

    def __init__(self, path: Path, root: Any) -> None:
        self.path = path
        self._root = root
        a = root.attrs
        self.kind: str = a["kind"]
        self.factor: int = int(a["factor"])
        self.input_exposure_s: float = float(a["input_exposure_s"])
        self.target_exposure_s: float = float(a["target_exposure_s"])
        self.seed: int = int(a["seed"])
        self.components: tuple[str, ...] = tuple(a["components"])
        self.splits: dict[str, int] = dict(a["splits"])
        self.target_background: bool = bool(a["target_background"])
        self.target_noise: str = str(a.get("target_noise", "poisson"))
        # stores written before revisions were recorded are revision 1 (see SIMULATOR_REVISION)
        self.simulator_revision: int = int(a.get("simulator_revision", 1))
        self.attrs: dict = dict(a)
        self.mask: np.ndarray = np.asarray(root["mask_input"][...], dtype=bool)
        self.target_mask: np.ndarray = np.asarray(root["mask_target"][...], dtype=bool)

    def component(self, name: str, split: str = "train") -> ComponentSet:
        """The arrays of component ``name`` in ``split``."""
        if name not in self.components:
            raise ConfigError(f"no component {name!r} in {self.path}; have {self.components}")
        if split not in self.splits:
            raise ConfigError(f"no split {split!r} in {self.path}; have {sorted(self.splits)}")
        g = self._root[f"{split}/{name}"]
        return ComponentSet(name, split, g["input"], g["target"], list(g.attrs.get("samples", [])),
                            g["input_expected"] if "input_expected" in g else None)

    def __repr__(self) -> str:
        return (f"TrainingSet({str(self.path)!r}, kind={self.kind!r}, factor={self.factor}, "
                f"splits={self.splits})")


def open_training_set(path: str | os.PathLike) -> TrainingSet:
    """Open a training set for reading.

    Raises
    ------
    InputFileError
        When ``path`` does not exist or is not a training set written by this simulator.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such training set")
    try:
        root = zarr.open_group(str(p), mode="r")
    except Exception as exc:  # zarr raises several types for non-stores
        raise InputFileError(p, f"not a Zarr store: {exc}") from None
    if root.attrs.get("format") != FORMAT:
        raise InputFileError(p, f"not an xsa-enhance training set (format {root.attrs.get('format')!r})")
    return TrainingSet(p, root)
