"""What the pipeline hands the store: a processed observation, an enhanced image.

The store builds the groups, attributes, records and catalog rows of what it is given
(:mod:`xsa_enhance.store.records`) and writes them by its write protocol; the task that
calls :func:`write_observation` owns ``obs/<obsid>`` and its slice inputs, the one that calls
:func:`write_enhanced` one product group. The rows are returned for the driver to commit.
The processed observation and the enhanced image are taken as they come from the events and
models stages (duck-typed: the store imports neither).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsa_enhance._version import __version__
from xsa_enhance.errors import ObservationError
from xsa_enhance.store.image_groups import SliceData
from xsa_enhance.store.layout import jsonable
from xsa_enhance.store.records import (
    catalog_row,
    float_or_nan,
    image_slice_id,
    pointing_fields,
    uncertainty_summary,
)
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["StoredSlice", "StoredObservation", "write_observation", "write_enhanced"]

logger = logging.getLogger(__name__)


@dataclass
class StoredSlice:
    """A slice image as written: its key, group attributes and ``slices`` row."""

    slice_id: str
    image: Any
    attrs: dict[str, Any]
    row: dict[str, Any]


@dataclass
class StoredObservation:
    """An observation as written: ``status`` ``ok`` or ``skipped`` (no slice of a nominal
    length), the reason, its ``observations`` row and its slices."""

    status: str
    reason: str
    row: dict[str, Any]
    slices: list[StoredSlice] = field(default_factory=list)


def write_observation(
    store: ProductStore,
    obsid: str,
    processed: Any,
    *,
    events_config: Mapping[str, Any],
    provenance: Mapping[str, str],
) -> StoredObservation:
    """Write the group of one observation and its slice inputs, then mark it complete.

    Parameters
    ----------
    store : ProductStore
        The store (opened for writing).
    obsid : str
        Observation identifier (validated).
    processed : ProcessedObservation
        The events stage's result: pointing, screening, clean GTIs and slice images.
    events_config : mapping
        The events options used (``EventsConfig.to_dict()``), kept with the observation.
    provenance : mapping
        ``pps_version``, ``pps_proc_date``, ``harvest_status`` and ``harvest_time`` of the
        harvested products.

    Returns
    -------
    StoredObservation
    """
    pps_version = str(provenance.get("pps_version", ""))
    pps_proc_date = str(provenance.get("pps_proc_date", ""))
    harvest_status = str(provenance.get("harvest_status", ""))
    harvest_time = str(provenance.get("harvest_time", ""))
    pointing = pointing_fields(obsid, processed)
    gtis = np.asarray(processed.clean_gtis, dtype=float).reshape(-1, 2)
    store.begin_observation(obsid, attrs={
        **pointing,
        "ontime_s": float(processed.ontime),
        "clean_gtis": gtis.tolist(),
        "clean_exposure_s": float(processed.clean_exposure_s),
        "flare_fraction": float(processed.flare_fraction),
        "flare_source": str(processed.flare_source),
        "n_events": int(processed.n_events),
        "n_screened": int(processed.n_screened),
        "events_config": dict(events_config),
        "pps_version": pps_version,
        "pps_proc_date": pps_proc_date,
        "harvest_status": harvest_status,
        "harvest_time": harvest_time,
        "software_version": __version__,
    })
    stored = [_write_slice(store, obsid, image, pointing, pps_version)
              for image in processed.slices]
    status, reason = "ok", ""
    if not [s for s in stored if s.row["length_ks"] > 0]:
        status = "skipped"
        reason = (
            f"clean exposure {processed.clean_exposure_s / 1000:.1f} ks is shorter than one "
            f"{float(events_config['slice_unit_ks']):g} ks slice"
        )
    row = catalog_row(
        "observations",
        **pointing,
        ontime=float(processed.ontime),
        clean_exposure=float(processed.clean_exposure_s),
        flare_fraction=float(processed.flare_fraction),
        n_slices=len(stored),
        pps_version=pps_version,
        pps_proc_date=pps_proc_date,
        harvest_status=harvest_status,
        harvest_time=harvest_time,
        status=status,
        reason=reason,
        store_path=store.observation_path(obsid),
    )
    store.finish_observation(obsid, record=row)
    return StoredObservation(status=status, reason=reason, row=row, slices=stored)


def _write_slice(store: ProductStore, obsid: str, image: Any, pointing: Mapping[str, Any],
                 pps_version: str) -> StoredSlice:
    """Write one slice input (counts, exposure map, mask) with its attributes and row."""
    sid = image_slice_id(image)
    gtis = np.asarray(image.gtis, dtype=float).reshape(-1, 2)
    mask = np.asarray(image.mask, dtype=bool)
    counts = np.asarray(image.counts)
    attrs = {
        **pointing,
        "expidstr": image.expidstr,
        "length_ks": None if image.length_ks is None else float(image.length_ks),
        "n_slices": int(image.n_slices),
        "index": int(image.index),
        "gtis": gtis.tolist(),
        "grid": image.grid.name,
        "grid_binsize": float(image.grid.binsize),
        "band_eV": [int(image.band[0]), int(image.band[1])],
        "expression": str(image.expression),
        "pps_version": pps_version,
    }
    row = catalog_row(
        "slices",
        obsid=obsid,
        expidstr=image.expidstr,
        slice_id=sid,
        length_ks=0 if image.length_ks is None else int(round(float(image.length_ks))),
        n_slices=int(image.n_slices),
        index=int(image.index),
        start=float(gtis[0, 0]) if len(gtis) else float("nan"),
        stop=float(gtis[-1, 1]) if len(gtis) else float("nan"),
        exposure=float(image.exposure_s),
        counts=int(counts[mask].sum()),
        band=f"{int(image.band[0])}-{int(image.band[1])} eV",
        store_path=store.input_path(obsid, sid),
    )
    store.write_slice_input(obsid, sid, counts=counts, exposure_s=float(image.exposure_s),
                            mask=mask, attrs=attrs, record=row)
    return StoredSlice(slice_id=sid, image=image, attrs=attrs, row=row)


def _check_product_attrs(obsid: str, slice_id: str, attrs: Mapping[str, Any]) -> None:
    """Validate product attributes against ``schemas/product-attributes.schema.json``."""
    from xsa_enhance.config import validate_data

    doc = jsonable({**attrs, "complete": True, "obsid": obsid, "slice_id": slice_id})
    issues = validate_data(doc, schema="product-attributes")
    if issues:
        text = "; ".join(f"{i.location}: {i.message}" for i in issues[:5])
        raise ObservationError(obsid, f"product attributes of {slice_id} invalid: {text}")


def write_enhanced(
    store: ProductStore,
    data: SliceData,
    out: Any,
    model: Any,
    *,
    clamp: str,
    stretch: str | None = None,
    caveats: Sequence[str] = (),
) -> dict[str, Any]:
    """Write one enhanced product of a stored slice; return its ``products`` row.

    Parameters
    ----------
    store : ProductStore
        The store (opened for writing).
    data : SliceData
        The input slice as read back from the store.
    out : EnhancedImage
        The models stage's result (counts, mask, exposure, grid, provenance, uncertainty).
    model : LoadedModel
        The model that made it (name, kind, weights digest, clamp, stretch, factor).
    clamp : str
        Clamp mode the product was made with.
    stretch : str, optional
        Stretch override the task was given.
    caveats : sequence of str
        Caveats carried by the product.

    Returns
    -------
    dict
        The product's row (also kept in its group).

    Raises
    ------
    ObservationError
        When the product attributes do not follow ``schemas/product-attributes.schema.json``.
    """
    obsid, slice_id = data.obsid, data.slice_id
    exposure_s = float(data.attrs["exposure_s"])
    provenance = dict(out.attrs)
    src = data.attrs
    attrs = {
        **provenance,
        "model": model.name,
        "kind": model.kind,
        "weights_sha256": model.sha256,
        "clamp_mode": clamp,
        "trained_clamp": str(provenance.get("trained_clamp", model.clamp)),
        "clamp_mismatch": bool(provenance.get("clamp_mismatch", False)),
        "stretch": str(provenance.get("stretch", stretch or model.stretch)),
        "input_slice": store.input_path(obsid, slice_id),
        "input_exposure_s": exposure_s,
        "output_exposure_s": float(out.exposure_s),
        "grid": out.grid.name if out.grid is not None else f"{model.factor}x",
        "expression": src.get("expression", ""),
        "band_eV": src.get("band_eV"),
        "gtis": src.get("gtis"),
        "ra_pnt": src.get("ra_pnt"),
        "dec_pnt": src.get("dec_pnt"),
        "pa_pnt": src.get("pa_pnt"),
        "software_version": __version__,
        "caveats": list(caveats),
        "uncertainty": out.uncertainty is not None,
    }
    _check_product_attrs(obsid, slice_id, attrs)
    out_mask = np.asarray(out.mask, dtype=bool)
    in_mask = np.asarray(data.mask, dtype=bool)
    input_counts = float(np.asarray(data.counts, dtype=float)[in_mask].sum())
    output_counts = float(np.asarray(out.counts, dtype=float)[out_mask].sum())
    row = catalog_row(
        "products",
        obsid=obsid,
        expidstr=str(src.get("expidstr", "")),
        slice_id=slice_id,
        length_ks=int(round(float(src.get("length_ks") or 0))),
        model=model.name,
        kind=model.kind,
        weights_sha256=model.sha256,
        clamp_mode=clamp,
        clamp_value=float_or_nan(provenance.get("clamp_value", float("nan"))),
        trained_clamp=attrs["trained_clamp"],
        clamp_mismatch=attrs["clamp_mismatch"],
        stretch=attrs["stretch"],
        grid=attrs["grid"],
        input_counts=input_counts,
        output_counts=output_counts,
        output_exposure=float(out.exposure_s),
        input_exposure=exposure_s,
        input_rate=input_counts / exposure_s if exposure_s > 0 else float("nan"),
        output_rate=(output_counts / float(out.exposure_s) if out.exposure_s > 0
                     else float("nan")),
        output_background="excluded" if model.kind == "sr" else "included",
        restored_rate=float_or_nan(provenance.get("restored_rate")),
        uncertainty_samples=(int(provenance.get("uncertainty_n_samples") or 0)
                             if out.uncertainty is not None else 0),
        **uncertainty_summary(out.counts, out.uncertainty, out_mask),
        store_path=store.product_path(obsid, slice_id, model.name, clamp),
        software_version=__version__,
    )
    store.write_product(
        obsid, slice_id, model=model.name, clamp=clamp, counts=out.counts, mask=out.mask,
        attrs=attrs, uncertainty=out.uncertainty, record=row,
    )
    return row
