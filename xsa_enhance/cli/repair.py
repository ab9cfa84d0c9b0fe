"""``xsa-enhance repair``: find and repair damage in a product store (dry run by default)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["repair_cmd"]


@click.command("repair", short_help="Find damaged data in a store; --apply to repair it.")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--apply", "do_apply", is_flag=True,
              help="Act: quarantine damaged groups, rebuild catalogs (default: only report).")
@click.option("--wait-for-lock", "wait_for_lock", type=click.FloatRange(min=0), default=None,
              is_flag=False, flag_value=float("inf"), metavar="[SECONDS]",
              help="When a run is writing the store, wait for it (SECONDS at most).")
def repair_cmd(store: Path, do_apply: bool, wait_for_lock: float | None) -> None:
    """Deep-check STORE (every array against its checksum, every catalog column) and repair it.

    Without --apply nothing is changed: the damage and the planned actions are listed, and
    the exit status is 1 when something is damaged. With --apply, damaged products and
    observations are moved to STORE/quarantine/<time>/ and their catalog rows removed (the
    next `xsa-enhance run` makes exactly those again), and unreadable catalogs are rebuilt
    from the records kept in every product group.
    """
    from xsa_enhance.store.repair import apply_repair, plan_repair

    plan = plan_repair(store)
    if not plan.needed:
        click.echo(f"{store}: no damage found, nothing to repair")
        return
    for line in plan.describe():
        click.echo(line)
    if not do_apply:
        click.echo(f"dry run: nothing changed; repair with `xsa-enhance repair {store} --apply`",
                   err=True)
        raise SystemExit(1)
    wait_s = (0.0 if wait_for_lock is None
              else None if wait_for_lock == float("inf") else wait_for_lock)
    report = apply_repair(plan, wait_for_lock_s=wait_s)
    if report.quarantined_to:
        click.echo(f"quarantined to {report.quarantined_to}")
    for name, n in report.rows.items():
        lost = report.lost_rows.get(name, 0)
        click.echo(f"catalog {name}: {n} rows" + (f" ({lost} rows not recoverable)" if lost
                                                   else ""))
    if report.without_record:
        click.echo(f"{len(report.without_record)} group(s) without a record (older version): "
                   "the next run removes and redoes them")
    click.echo(f"repaired; now run `xsa-enhance run` on {store} to make again what was "
               "quarantined")
