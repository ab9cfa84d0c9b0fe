"""What a run reports: progress counters while it runs and the summary when it is over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xsa_enhance.pipeline.weights import ModelInfo

__all__ = ["ProgressState", "RunSummary"]


@dataclass
class ProgressState:
    """Counters handed to the progress callback after every change."""

    observations_total: int = 0
    observations_done: int = 0
    slices_done: int = 0
    products_total: int = 0
    products_done: int = 0
    failures: int = 0
    skipped: int = 0
    message: str = ""


@dataclass
class RunSummary:
    """What a run did.

    Attributes
    ----------
    run_id : str
        Identifier written into every catalog row of the run.
    outcomes : list of dict
        Per observation: obsid, status (ok/failed/skipped), stage, reason.
    models : list of ModelInfo
        Models used (empty when none is installed).
    notes : list of str
        Things the user should know (e.g. no trained model installed).
    stage_seconds : dict
        Summed task time per stage (harvest, events, write, enhance...).
    driver_seconds : dict
        Time the driver spent itself: ``setup_s`` (store, orphans, models, selection),
        ``commit_s`` (catalog commits) and ``finalize_s`` (run log, consolidation).
    """

    run_id: str
    store: str
    started: str
    finished: str = ""
    wall_s: float = 0.0
    executor: str = ""
    dashboard_link: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    n_slices: int = 0
    n_products: int = 0
    n_products_failed: int = 0
    models: list[ModelInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    driver_seconds: dict[str, float] = field(default_factory=dict)
    selection_since: str | None = None

    def count(self, status: str) -> int:
        """Observations with this status."""
        return sum(1 for o in self.outcomes if o["status"] == status)

    def format(self) -> str:
        """A human-readable summary (several lines)."""
        lines = [
            f"run {self.run_id} into {self.store}: {len(self.outcomes)} observations - "
            f"{self.count('ok')} ok, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed; {self.n_slices} slice images, "
            f"{self.n_products} enhanced products"
            + (f" ({self.n_products_failed} failed)" if self.n_products_failed else "")
            + f" in {self.wall_s:.1f} s ({self.executor})",
        ]
        if self.models:
            def _one(m: ModelInfo) -> str:
                via = f"{m.source} -> " if m.source and m.source != m.ref else ""
                clamp = f", clamp {m.clamp}" if m.clamp else ""
                mism = f", MISMATCH: trained for {m.trained_clamp}" if m.clamp_mismatch else ""
                return f"{via}{m.name} [{m.kind}, sha256 {m.sha256[:12]}{clamp}{mism}]"

            lines.append("models: " + ", ".join(_one(m) for m in self.models))
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.orphans_removed:
            lines.append(f"removed {len(self.orphans_removed)} orphans of an interrupted run")
        width = max([6] + [len(o["obsid"]) for o in self.outcomes])
        for o in self.outcomes:
            reason = f"  ({o['stage']}: {o['reason']})" if o["reason"] else ""
            lines.append(f"  {o['obsid']:<{width}}  {o['status']:<7}{reason}")
        return "\n".join(lines)
