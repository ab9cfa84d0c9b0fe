"""Command line to refit an uncertainty calibration table (the ``python -m`` entry).

Run as ``python -m xsa_enhance.models.uncertainty fit MODEL TRAINING_SET [options]`` (or
``python -m xsa_enhance.models.uncertainty_fit fit ...``): it fits the table of one model,
clamp family and method with
:func:`~xsa_enhance.models.uncertainty_calibration.calibrate_uncertainty` and adds it to the
calibration file (:func:`~xsa_enhance.models.uncertainty_calibration.write_calibration`). This
module is a program: it configures logging, the library modules do not.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from xsa_enhance.logsetup import configure_logging
from xsa_enhance.models.uncertainty_calibration import calibrate_uncertainty, write_calibration
from xsa_enhance.models.uncertainty_resampling import METHODS

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xsa_enhance.models.uncertainty fit MODEL TRAINING_SET [options]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0).
    """
    ap = argparse.ArgumentParser(prog="python -m xsa_enhance.models.uncertainty")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit and store the calibration table of a model")
    f.add_argument("model")
    f.add_argument("training_set")
    f.add_argument("--clamp", default=None)
    f.add_argument("--n-images", type=int, default=6)
    f.add_argument("--n-samples", type=int, default=8)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--method", default="auto", choices=("auto", *METHODS))
    f.add_argument("--out", default=None, help="calibration file (default: the shipped one)")
    f.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    configure_logging("INFO")
    import torch

    torch.set_num_threads(a.threads)
    table = calibrate_uncertainty(a.model, a.training_set, clamp=a.clamp, n_images=a.n_images,
                                  n_samples=a.n_samples, seed=a.seed, method=a.method)
    path = write_calibration(table, a.out)
    print(f"{table['key']} -> {path}")
    print("factors", [round(v, 3) for v in table["factors"]])
    print("coverage raw       ", table["coverage_fit_raw"])
    print("coverage calibrated", table["coverage_fit_calibrated"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
