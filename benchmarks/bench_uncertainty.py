"""Benchmark of the per-pixel uncertainty: CPU seconds per frame with and without it.

For the shipped default weights (``xmm-denoise`` and ``xmm-superres``, constant clamp) on one
CPU thread (``torch.set_num_threads(1)``), on a standard 403 x 411 frame of Poisson counts with
a few bright sources and the detector mask:

* ``enhance_s``: one :func:`~xsa_enhance.models.inference.enhance` (the product without
  uncertainty);
* ``uncertainty_n{N}_s``: :func:`~xsa_enhance.models.uncertainty.estimate_uncertainty` with
  ``n_samples`` N (the output and N resamples in one ``enhance_batch`` call), and its ratio to
  ``enhance_s`` (the expected cost is about ``N + 1`` enhancements).

The median of ``repeats`` interleaved runs is reported. Run:
``python -m benchmarks.run --only uncertainty`` or ``python benchmarks/bench_uncertainty.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np
import torch


def _frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from xsa_enhance.instrument.grid import GRID_1X
    from xsa_enhance.instrument.mask import detector_mask

    rng = np.random.default_rng(seed)
    mask = np.asarray(detector_mask(GRID_1X), dtype=float)
    lam = np.full(GRID_1X.shape, 0.25)
    yy, xx = np.mgrid[: GRID_1X.shape[0], : GRID_1X.shape[1]]
    for _ in range(30):
        y, x = rng.uniform(40, 370), rng.uniform(40, 360)
        lam += rng.uniform(20, 400) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.0 ** 2)) \
            / (2 * np.pi)
    return rng.poisson(lam * mask).astype(float), mask


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the figures described in the module docstring.

    Parameters
    ----------
    quick : bool
        One repeat and ``n_samples`` 4 only.

    Returns
    -------
    dict
        Per model kind (``dn``, ``sr``): ``enhance_s``, ``uncertainty_n4_s`` (and ``_n8_s``),
        ``uncertainty_n4_ratio`` ...; plus ``torch_threads`` and the weights used.
    """
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.models.registry import load_model
    from xsa_enhance.models.uncertainty import estimate_uncertainty

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        repeats = 1 if quick else 3
        ns = (4,) if quick else (4, 8)
        counts, mask = _frame()
        result: dict[str, Any] = {"torch_threads": 1, "frame": "411x403, detector mask"}
        for kind, name in (("dn", "xmm-denoise"), ("sr", "xmm-superres")):
            model = load_model(name)
            enhance(counts, 20_000.0, mask, model)  # warm-up
            times: dict[str, list[float]] = {"enhance_s": []}
            times.update({f"uncertainty_n{n}_s": [] for n in ns})
            for _ in range(repeats):
                t = time.perf_counter()
                enhance(counts, 20_000.0, mask, model)
                times["enhance_s"].append(time.perf_counter() - t)
                for n in ns:
                    t = time.perf_counter()
                    estimate_uncertainty(counts, 20_000.0, mask, model, n_samples=n, seed=0)
                    times[f"uncertainty_n{n}_s"].append(time.perf_counter() - t)
            fig: dict[str, Any] = {"model": model.name}
            for key, vals in times.items():
                fig[key] = statistics.median(vals)
            for n in ns:
                fig[f"uncertainty_n{n}_ratio"] = fig[f"uncertainty_n{n}_s"] / fig["enhance_s"]
            result[kind] = fig
        return result
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import argparse
    import logging

    logging.basicConfig(level=logging.ERROR)
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=ap.parse_args().quick), indent=2))
