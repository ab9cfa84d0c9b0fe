"""Run every benchmark side by side and write the figures.

Usage::

    python -m benchmarks.run [--quick] [--only NAME ...] [--out benchmarks/results]

Each ``benchmarks/bench_<name>.py`` module exposes ``run(quick: bool = False) -> dict``. The
figures of all modules are written to ``<out>/latest.json`` (plus a timestamped copy), a
markdown table ``<out>/latest.md`` and, when the pipeline benchmark reports a scaling curve,
``<out>/scaling.png``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_<name>.py``) in this folder."""
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"[{len(value)} values]"
    return str(value)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Write the figures as one markdown table per benchmark."""
    lines = [f"# Benchmark results ({results['meta']['date']})", ""]
    meta = results["meta"]
    lines.append(
        f"Machine: {meta['machine']}, Python {meta['python']}, quick={meta['quick']}, "
        f"total {meta['seconds']:.1f} s."
    )
    lines.append("")
    for name, figures in results["benchmarks"].items():
        lines += [f"## {name}", "", "| figure | value |", "| --- | --- |"]
        flat: dict[str, Any] = {}
        _flatten("", figures, flat)
        for key, value in flat.items():
            lines.append(f"| {key} | {_fmt(value)} |")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def plot_scaling(results: dict[str, Any], path: Path) -> bool:
    """Plot ``pipeline.scaling`` (workers -> throughput) if a benchmark reported it."""
    scaling = results["benchmarks"].get("pipeline", {}).get("scaling")
    if not isinstance(scaling, dict) or not scaling:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = sorted(int(k) for k in scaling)
    rate = [float(scaling[str(w)] if str(w) in scaling else scaling[w]) for w in workers]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(workers, rate, "o-", label="measured")
    ax.plot(workers, [rate[0] * w / workers[0] for w in workers], "--", label="linear")
    ax.set_xlabel("Dask workers")
    ax.set_ylabel("throughput (observations / s)")
    ax.set_xticks(workers)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    names = args.only or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {discover()}")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"benchmarks": {}, "failed": {}}
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            figures = module.run(quick=args.quick)
        except Exception:  # a broken benchmark must not hide the others' figures
            results["failed"][name] = traceback.format_exc()
            print(f"    FAILED:\n{results['failed'][name]}", flush=True)
            continue
        results["benchmarks"][name] = figures
        print(f"    done in {time.perf_counter() - start:.1f} s", flush=True)
    results["meta"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "quick": args.quick,
        "seconds": time.perf_counter() - t0,
    }
    text = json.dumps(results, indent=2, default=float)
    (args.out / "latest.json").write_text(text, encoding="utf-8")
    stamp = results["meta"]["date"].replace(":", "").replace("-", "")
    (args.out / f"run-{stamp}{'-quick' if args.quick else ''}.json").write_text(text)
    write_markdown(results, args.out / "latest.md")
    if plot_scaling(results, args.out / "scaling.png"):
        print(f"scaling curve: {args.out / 'scaling.png'}")
    print(f"figures: {args.out / 'latest.json'}, {args.out / 'latest.md'}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
