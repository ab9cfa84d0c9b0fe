"""The dask-jobqueue profiles in deploy/jobqueue/: directives, lifetimes, and a job that runs.

The batch scripts are produced by dask-jobqueue's own ``job_script()`` from the shipped YAML,
loaded both the way users do it (Dask's config collection) and through
``xsa_enhance.config.make_jobqueue_cluster``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.config
import pytest
import yaml
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.config import jobqueue_config_name, make_jobqueue_cluster
from xsa_enhance.errors import ConfigError, InputFileError

REPO = Path(__file__).resolve().parents[1]
JOBQUEUE = REPO / "deploy" / "jobqueue"
CASES = [(s, p) for s in ("slurm", "pbs") for p in ("cpu", "gpu")]
NO_DASHBOARD = {"dashboard_address": None}


def _seconds(text: str) -> int:
    """Parse Dask durations ('225m', '10m', '1h') and walltimes ('04:00:00')."""
    if ":" in text:
        parts = [int(x) for x in text.split(":")]
        while len(parts) < 3:
            parts.insert(0, 0)
        h, m, s = parts
        return 3600 * h + 60 * m + s
    m = re.fullmatch(r"(\d+)\s*(s|m|h)", text.strip())
    assert m, text
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("system,profile", CASES)
def test_job_script_directives(system, profile):
    with make_jobqueue_cluster(system, profile, scheduler_options=NO_DASHBOARD) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    if system == "slurm":
        assert "#SBATCH -t 04:00:00" in lines
        assert ("#SBATCH --gres=gpu:1" in lines) == (profile == "gpu")
        assert f"#SBATCH --cpus-per-task={16 if profile == 'cpu' else 8}" in lines
        assert "#SBATCH --mem=64G" in lines
    else:
        assert "#PBS -l walltime=04:00:00" in lines
        select = [l for l in lines if l.startswith("#PBS -l select=")]
        assert len(select) == 1
        assert ("ngpus=1" in select[0]) == (profile == "gpu")
    worker = [l for l in lines if "distributed.cli.dask_worker" in l]
    assert len(worker) == 1
    cmd = worker[0]
    assert cmd.startswith("python -m distributed.cli.dask_worker tcp://")
    assert "--local-directory $XSA_SCRATCH" in cmd
    assert ("--resources GPU=1" in cmd) == (profile == "gpu")
    # the environment is activated and the node-local scratch made before the worker starts
    idx = lines.index(worker[0])
    prologue = "\n".join(lines[:idx])
    assert re.search(r"^source .*/bin/activate\"?$", prologue, re.M)
    assert "mkdir -p \"$XSA_SCRATCH" in prologue
    assert "XDG_CACHE_HOME=\"$XSA_SCRATCH/cache\"" in prologue  # no shared astropy cache
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize("system,profile", CASES)
def test_lifetime_retires_workers_before_walltime(system, profile):
    """Workers must leave (lifetime + stagger) at least 5 minutes before the walltime."""
    section = yaml.safe_load((JOBQUEUE / f"{system}.yaml").read_text())["jobqueue"][
        f"xsa-{system}-{profile}"
    ]
    args = [str(a) for a in section["worker-extra-args"]]
    lifetime = _seconds(_arg(args, "--lifetime"))
    stagger = _seconds(_arg(args, "--lifetime-stagger"))
    walltime = _seconds(section["walltime"])
    assert stagger > 0
    assert lifetime + stagger + 300 <= walltime
    assert lifetime - stagger >= walltime / 2  # and not absurdly early


def test_profiles_load_through_dask_config_collection(tmp_path):
    """What users do: put the file in a Dask config folder and name the section."""
    from dask_jobqueue import PBSCluster, SLURMCluster

    collected = dask.config.collect(paths=[str(JOBQUEUE)], env={})
    for system, cls in (("slurm", SLURMCluster), ("pbs", PBSCluster)):
        for profile in ("cpu", "gpu"):
            name = jobqueue_config_name(system, profile)
            assert name in collected["jobqueue"]
            with dask.config.set(jobqueue=collected["jobqueue"]):
                with cls(config_name=name, scheduler_options=NO_DASHBOARD) as cluster:
                    script = cluster.job_script()
            assert "--lifetime 225m --lifetime-stagger 10m" in script


def test_overrides_and_unknown_names(tmp_path):
    with make_jobqueue_cluster(
        "slurm", "cpu", queue="short", account="xmm42", scheduler_options=NO_DASHBOARD
    ) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p short" in script and "#SBATCH -A xmm42" in script
    with pytest.raises(ConfigError, match="unknown batch system 'lsf'"):
        make_jobqueue_cluster("lsf", "cpu")
    with pytest.raises(ConfigError, match="unknown worker profile 'tpu'"):
        make_jobqueue_cluster("slurm", "tpu")
    other = tmp_path / "site.yaml"
    other.write_text("jobqueue:\n  mine: {cores: 1}\n")
    with pytest.raises(InputFileError, match="no jobqueue section 'xsa-slurm-cpu'"):
        make_jobqueue_cluster("slurm", "cpu", path=other)


def test_cli_job_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["deploy", "job-script", "--system", "pbs", "--profile", "gpu"])
    assert res.exit_code == 0, res.output
    # the preview leaves nothing behind (dask-jobqueue makes its log folder on start)
    assert list(tmp_path.iterdir()) == [] and Path.cwd() == tmp_path
    assert "logs/dask-jobs" in res.stdout
    assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=64GB" in res.stdout
    assert "--resources GPU=1" in res.stdout
    res = CliRunner().invoke(main, ["deploy", "job-script", "--system", "lsf"])
    assert res.exit_code == 2


def test_generated_slurm_gpu_job_runs_a_worker_that_joins(tmp_path):
    """Run the generated batch script with bash, as sbatch would on a node.

    The worker it starts must join the cluster's scheduler with the GPU resource, in the
    job's node-local scratch folder; the scratch is removed when the job ends.
    """
    from distributed import Client

    with make_jobqueue_cluster(
        "slurm", "gpu", scheduler_options=NO_DASHBOARD, memory="2GiB", cores=1
    ) as cluster:
        script = tmp_path / "job.sh"
        script.write_text(cluster.job_script())
        env = dict(os.environ)
        env.update(
            XSA_VENV=sys.prefix,
            TMPDIR=str(tmp_path / "node-tmp"),
            SLURM_JOB_ID="4242",
        )
        (tmp_path / "node-tmp").mkdir()
        scratch = tmp_path / "node-tmp" / "xsa-enhance-4242"
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=tmp_path,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            with Client(cluster, timeout=30) as client:
                deadline = time.monotonic() + 60
                workers = {}
                while time.monotonic() < deadline and not workers:
                    if proc.poll() is not None:
                        pytest.fail(f"job script exited: {proc.stderr.read().decode()[-2000:]}")
                    workers = client.scheduler_info()["workers"]
                    time.sleep(0.5)
                assert len(workers) == 1, "the job's worker never joined"
                (info,) = workers.values()
                assert info["resources"] == {"GPU": 1}
                local_dirs = client.run(lambda dask_worker: dask_worker.local_directory)
                (local_dir,) = local_dirs.values()
                assert Path(local_dir).resolve().is_relative_to(scratch.resolve())
                assert (scratch / "cache" / "astropy").is_dir()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert not scratch.exists(), "the job's scratch folder was left behind"
