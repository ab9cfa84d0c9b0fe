"""Observation selection for a run, with the reasons observations are left out.

The archive stage's :func:`~xsa_enhance.archive.select_observations` returns what qualifies
(public, EPIC-pn full frame, scientific, long enough). For the runs log the pipeline also
wants to say *why* the other observations in the same cone / obsid list / date range were
skipped; :func:`plan_selection` asks the archive a second, broader question to find them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from xsa_enhance.errors import ConfigError
from xsa_enhance.obsid import REASON as OBSID_REASON
from xsa_enhance.obsid import is_obsid
from xsa_enhance.pipeline.config import LAST_SUCCESSFUL_RUN, PipelineConfig

__all__ = ["SelectionPlan", "plan_selection", "resolve_since"]

logger = logging.getLogger(__name__)

_ALL_PN_MODES = (
    "PrimeFullWindow", "PrimeFullWindowExtended", "PrimeLargeWindow", "PrimeSmallWindow",
    "FastTiming", "FastBurst",
)


@dataclass
class SelectionPlan:
    """Observations to process and those left out.

    Attributes
    ----------
    records : list of dict
        One per selected observation (the archive's ``ObservationRecord`` fields).
    skipped : dict
        obsid -> reason for observations the selection leaves out.
    since : str or None
        The processing-date limit actually used.
    """

    records: list[dict[str, Any]]
    skipped: dict[str, str]
    since: str | None


def resolve_since(since: str | None, store: Any) -> str | None:
    """Turn ``selection.since`` into a date (``last-successful-run`` reads the store)."""
    if since != LAST_SUCCESSFUL_RUN:
        return since
    last = store.last_successful_run()
    if last is None:
        logger.info("no successful run in the store yet: selecting without a date limit")
        return None
    return str(last["started"]).rstrip("Z")


def _explain(rec: Any, *, min_duration_ks: float, full_frame: tuple[str, ...]) -> str:
    if rec.submode not in full_frame:
        mode = "timing" if "Timing" in rec.submode or "Burst" in rec.submode else rec.submode
        return f"pn in {mode} mode (not full frame)"
    if rec.duration < min_duration_ks * 1000.0:
        return f"pn exposure {rec.duration / 1000:.1f} ks shorter than {min_duration_ks:g} ks"
    return "left out by the selection"


def plan_selection(config: PipelineConfig, *, store: Any = None, explain: bool = True) -> SelectionPlan:
    """Select the observations of a run through the archive's TAP service.

    Parameters
    ----------
    config : PipelineConfig
        The run's configuration (archive and selection sections).
    store : ProductStore, optional
        Needed for ``since: last-successful-run``.
    explain : bool
        Also find the observations left out and why (two more TAP queries).

    Returns
    -------
    SelectionPlan
    """
    from xsa_enhance.archive.select import Selection, select_observations

    sel = config.selection
    since = resolve_since(sel.since, store) if store is not None else (
        None if sel.since == LAST_SUCCESSFUL_RUN else sel.since
    )
    arch = config.archive
    try:
        selection = Selection(
            min_duration_ks=float(sel.min_duration_ks),
            cone=tuple(sel.cone) if sel.cone else None,  # type: ignore[arg-type]
            since=since,
            obsids=list(sel.obsids) or None,
        )
    except TypeError as exc:  # pragma: no cover - contract drift
        raise ConfigError(f"selection: {exc}") from exc
    rejected: dict[str, str] = {}  # ids in the TAP reply that are not observation ids
    records = select_observations(selection, config=arch, rejected=rejected)
    if sel.max_observations is not None:
        records = records[: int(sel.max_observations)]
    chosen = {r.obsid for r in records}
    skipped: dict[str, str] = {}
    if explain:
        try:
            skipped = _explain_left_out(selection, since, arch, chosen, float(sel.min_duration_ks))
        except Exception as exc:  # noqa: BLE001 - explanations are a courtesy
            logger.warning("could not list the observations left out: %s", exc)
    skipped.update(rejected)
    recs = [_record_dict(r) for r in records]
    logger.info("selection: %d observations, %d left out", len(recs), len(skipped))
    return SelectionPlan(records=recs, skipped=dict(sorted(skipped.items())), since=since)


def _explain_left_out(
    selection: Any, since: str | None, arch: Any, chosen: set[str], min_duration_ks: float
) -> dict[str, str]:
    """Reasons for the observations matching the cone/obsid/date filters but not selected.

    Three broader questions: public pn exposures in any mode and of any length, the same
    including proprietary observations, and every observation id.
    """
    from xsa_enhance.archive.select import FULL_FRAME_MODES, Selection, select_observations

    def broad(include_proprietary: bool) -> list[Any]:
        return select_observations(
            Selection(
                min_duration_ks=0.0, cone=selection.cone, since=since, obsids=selection.obsids,
                include_proprietary=include_proprietary, modes=_ALL_PN_MODES,
            ),
            config=arch,
        )

    skipped: dict[str, str] = {}
    public = broad(False)
    public_ids = {r.obsid for r in public}
    for rec in public:
        if rec.obsid not in chosen:
            skipped[rec.obsid] = _explain(
                rec, min_duration_ks=min_duration_ks, full_frame=tuple(FULL_FRAME_MODES)
            )
    for rec in broad(True):
        if rec.obsid not in chosen and rec.obsid not in public_ids:
            skipped[rec.obsid] = "proprietary (not public)"
    seen = chosen | set(skipped)
    for obsid in _all_observation_ids(selection, since, arch):
        if obsid not in seen:
            skipped[obsid] = "no EPIC-pn imaging exposure" if is_obsid(obsid) else OBSID_REASON
    for obsid in selection.obsids or ():
        if obsid not in chosen and obsid not in skipped:
            skipped[obsid] = "not found in the archive"
    return skipped


def _record_dict(rec: Any) -> dict[str, Any]:
    try:
        return asdict(rec)
    except TypeError:
        return dict(vars(rec))


def _all_observation_ids(selection: Any, since: str | None, arch: Any) -> list[str]:
    """Observation ids of ``xsa.v_all_observations`` matching the cone/obsid/date filters."""
    from xsa_enhance.archive.client import XsaClient

    where = []
    if selection.cone is not None:
        ra, dec, r = selection.cone
        where.append(
            f"1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra:.8f}, {dec:.8f}, {r:.8f}))"
        )
    if selection.obsids:
        ids = ", ".join(f"'{o}'" for o in selection.obsids)
        where.append(f"observation_id IN ({ids})")
    if since:
        where.append(f"pps_proc_date >= '{str(since).replace(chr(39), '')}'")
    query = "SELECT observation_id FROM xsa.v_all_observations"
    if where:
        query += " WHERE " + " AND ".join(where)
    table = XsaClient(arch).query_xsa_tap(query)
    return sorted(str(v) for v in table["observation_id"])
