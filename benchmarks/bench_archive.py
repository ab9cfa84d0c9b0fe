"""Archive stage: TAP selection latency, harvest throughput and overheads, side by side.

All against the local archive on loopback (the real XSA's network dominates there; these
figures measure the harvester's own costs): astroquery's bare ``download_data`` versus
``harvest_observation`` (download + rename + verification + atomic publish), a cache hit,
threads, and the cost of retries under injected 5xx faults.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xsa_enhance.archive import ArchiveConfig, Selection, harvest_observation, select_observations
from xsa_enhance.archive.client import XsaClient
from xsa_enhance.standin import FaultPlan, LocalArchive
from xsa_enhance.standin.products import minimal_products


def _harvest_all(obsids, out, config, jobs=1):
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda o: harvest_observation(o, out, config=config), obsids))
    dt = time.perf_counter() - t0
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    return dt, results


def run(quick: bool = False) -> dict:
    """Measure the archive stage; ``quick`` uses small synthetic files instead of the simulator."""
    n = 3 if quick else 4
    kinds = ["extended"] * n  # single-exposure pn full-frame observations
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        tmp = Path(tmp)
        producer = minimal_products if quick else None
        t0 = time.perf_counter()
        archive = LocalArchive(tmp / "root", kinds=kinds, seed=7, producer=producer)
        archive.start()
        prepare_s = time.perf_counter() - t0
        try:
            config = ArchiveConfig(tap_url=archive.tap_url, aio_url=archive.aio_url,
                                   timeout=60, retries=3, backoff=0.0)
            obsids = [o.obsid for o in archive.observations]
            total_bytes = sum(f.stat().st_size for o in archive.observations
                              for f in o.files.values())
            # TAP selection latency
            lat = []
            for _ in range(3 if quick else 8):
                t = time.perf_counter()
                recs = select_observations(Selection(), config=config)
                lat.append(time.perf_counter() - t)
            assert len(recs) == n
            # bare astroquery download_data (into a scratch cwd), both products
            client = XsaClient(config)
            bare_dir = tmp / "bare"
            bare_dir.mkdir()
            client.target_dir = bare_dir
            t = time.perf_counter()
            for o in obsids:
                for prod in ("PIEVLI", "FBKTSR"):
                    client.download_data(o, level="PPS", instname="PN", name=prod,
                                         extension="FTZ", cache=False)
                    os.replace(bare_dir / f"{o}.FTZ", bare_dir / f"{o}-{prod}.FTZ")
            bare_s = time.perf_counter() - t
            # full harvest, serial and threaded, then cache hits
            serial_s, _ = _harvest_all(obsids, tmp / "h1", config, jobs=1)
            threaded_s, _ = _harvest_all(obsids, tmp / "h4", config, jobs=4)
            cached_s, res = _harvest_all(obsids, tmp / "h1", config, jobs=1)
            assert all(r.status == "cached" for r in res)
        finally:
            archive.stop()
        # retries: every observation's first two requests answer 503
        faulty = LocalArchive(tmp / "root", kinds=kinds, seed=7, producer=producer,
                              faults=FaultPlan(server_errors=2))
        faulty.start()
        try:
            fcfg = ArchiveConfig(tap_url=faulty.tap_url, aio_url=faulty.aio_url, timeout=60,
                                 retries=3, backoff=0.0)
            faulty_s, res = _harvest_all(obsids, tmp / "hf", fcfg, jobs=1)
            injected = faulty.faults_injected().get("server_error", 0)
        finally:
            faulty.stop()
    mb = total_bytes / 1e6
    return {
        "observations": n,
        "data_mb": round(mb, 3),
        "simulated": not quick,
        "prepare_archive_s": prepare_s,
        "tap_select_median_s": statistics.median(lat),
        "bare_astroquery_download_s": bare_s,
        "harvest_serial_s": serial_s,
        "harvest_serial_mb_per_s": mb / serial_s,
        "harvest_overhead_vs_bare_astroquery": serial_s / bare_s,
        "harvest_4_threads_s": threaded_s,
        "threads_speedup": serial_s / threaded_s,
        "cache_hit_s_per_obs": cached_s / n,
        "cache_hit_speedup": serial_s / cached_s,
        "with_2x503_per_obs_s": faulty_s,
        "retry_faults_injected": injected,
        "retry_slowdown": faulty_s / serial_s,
    }


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
