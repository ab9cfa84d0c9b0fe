"""``xsa-enhance simulate``: observations, training sets and quicklooks from the simulator."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from xsa_enhance.cli.common import UserError, progress

__all__ = ["simulate_group"]

logger = logging.getLogger(__name__)

_MODES = ["PrimeFullWindow", "PrimeFullWindowExtended", "PrimeLargeWindow",
          "PrimeSmallWindow", "FastTiming"]
_EXTENDED = ["random", "none", "cluster", "group", "snr", "spiral", "elliptical"]


@click.group("simulate")
def simulate_group() -> None:
    """Simulate EPIC-pn observations (PPS-like event lists) and training images."""


@simulate_group.command("observation")
@click.option("--obsid", required=True, help="10-digit observation id, e.g. 0000000001.")
@click.option("--exposure", type=float, required=True, help="Exposure in ks.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder receiving the PIEVLI and FBKTSR files.")
@click.option("--flares/--no-flares", default=True, show_default=True,
              help="Inject soft-proton flares.")
@click.option("--fbktsr/--no-fbktsr", default=True, show_default=True,
              help="Write the flaring-background light curve.")
@click.option("--mode", "submode", type=click.Choice(_MODES), default="PrimeFullWindow",
              show_default=True, help="pn read-out mode (SUBMODE).")
@click.option("--instrument", type=click.Choice(["EPN", "EMOS1", "EMOS2"]), default="EPN",
              show_default=True, help="Camera (MOS files are written for rejection tests).")
@click.option("--filter", "filter_", type=click.Choice(["Thin1", "Thin2", "Medium", "Thick"]),
              default="Medium", show_default=True)
@click.option("--ra", type=float, default=None, help="Pointing RA (deg); random if omitted.")
@click.option("--dec", type=float, default=None, help="Pointing Dec (deg); random if omitted.")
@click.option("--pa", type=float, default=None, help="Position angle (deg); random if omitted.")
@click.option("--date-obs", default=None, help="UTC start, YYYY-MM-DDThh:mm:ss.")
@click.option("--agn/--no-agn", default=True, show_default=True, help="Include AGN.")
@click.option("--absorption", type=float, default=None,
              help="AGN absorption factor (default: log-uniform in [1, 100]).")
@click.option("--extended", type=click.Choice(_EXTENDED), default="random", show_default=True,
              help="Extended source in the field.")
@click.option("--data-gap", is_flag=True, help="Insert a telemetry gap (split GTIs).")
def observation_cmd(obsid: str, exposure: float, seed: int, out_dir: str, flares: bool,
                    fbktsr: bool, submode: str, instrument: str, filter_: str,
                    ra: float | None, dec: float | None, pa: float | None,
                    date_obs: str | None, agn: bool, absorption: float | None, extended: str,
                    data_gap: bool) -> None:
    """Write P<obsid>PNS003PIEVLI0000.FTZ (and the FBKTSR light curve) into OUT."""
    from xsa_enhance.simulate.observation import SourceMix, simulate_observation

    if absorption is not None and absorption <= 0:
        raise UserError(f"--absorption must be positive, got {absorption}")
    mix = SourceMix(agn=agn, absorption=absorption,
                    extended=None if extended == "none" else extended)
    obs = simulate_observation(
        out_dir, obsid=obsid, exposure_ks=exposure, seed=seed, flares=flares,
        with_fbktsr=fbktsr, submode=submode, instrument=instrument, filter=filter_,
        ra=ra, dec=dec, pa=pa, date_obs=date_obs, sources=mix, data_gap=data_gap,
    )
    click.echo(json.dumps({
        "obsid": obs.obsid,
        "pievli": str(obs.pievli),
        "fbktsr": str(obs.fbktsr) if obs.fbktsr else None,
        "n_events": obs.n_events,
        "ra_pnt": obs.ra_pnt, "dec_pnt": obs.dec_pnt, "pa_pnt": obs.pa_pnt,
        "date_obs": obs.date_obs, "ontime": obs.ontime,
        "flares": [[f.t_peak, f.width_s, f.peak_rate] for f in obs.flares],
        "flcutthr": obs.flcutthr,
        "n_agn": int(obs.agn_rate.size),
        "extended": obs.extended_kind,
    }, indent=1))


@simulate_group.command("training-set")
@click.option("--kind", type=click.Choice(["sr", "dn"]), required=True,
              help="sr: 20 ks 1x -> 100 ks 2x; dn: 20 ks -> 50 ks.")
@click.option("--n", "n", type=click.IntRange(min=1), required=True,
              help="Samples per component (split 80/10/10).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "store", type=click.Path(), required=True, help="Zarr store to create.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option("--psf", type=click.Choice(["handbook", "ccf-extended"]), default="handbook",
              show_default=True, help="PSF model of the inputs (targets: halved for sr).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (same result for any number).")
@click.option("--points", "with_points", is_flag=True,
              help="Also simulate the 'points' component: bright unabsorbed point sources "
                   "(10-1000 counts in 20 ks), drawn into samples with the training "
                   "config's p_points.")
@click.option("--target-noise", type=click.Choice(["poisson", "none"]), default="poisson",
              show_default=True,
              help="poisson: Poisson-sampled targets (the paper); none: the expected counts.")
def training_set_cmd(kind: str, n: int, seed: int, store: str, overwrite: bool,
                     psf: str, workers: int, with_points: bool, target_noise: str) -> None:
    """Simulate extended, AGN and background components into a training-set store."""
    from xsa_enhance.instrument.psf import PSF_CCF_EXTENDED, PSF_HANDBOOK
    from xsa_enhance.simulate.training import write_training_set

    model = PSF_HANDBOOK if psf == "handbook" else PSF_CCF_EXTENDED
    from xsa_enhance.simulate.images import COMPONENTS

    components = (*COMPONENTS, "points") if with_points else COMPONENTS
    path = write_training_set(store, kind=kind, n=n, seed=seed, progress=progress,
                              psf=model, overwrite=overwrite, workers=workers,
                              components=components, target_noise=target_noise)
    click.echo(str(path))


@simulate_group.command("quicklook")
@click.option("--kind", type=click.Choice(["sr", "dn"]), default="sr", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_png", type=click.Path(dir_okay=False), required=True,
              help="PNG to write.")
def quicklook_cmd(kind: str, seed: int, out_png: str) -> None:
    """Write a PNG of one simulated field: input and target side by side (sqrt stretch)."""
    from xsa_enhance.simulate.quicklook import simulate_field, write_quicklook

    if not out_png.lower().endswith(".png"):
        raise UserError(f"{out_png}: the quicklook is a PNG; give a name ending in .png")
    field = simulate_field(kind=kind, seed=seed)
    path = write_quicklook(field, Path(out_png))
    click.echo(str(path))
