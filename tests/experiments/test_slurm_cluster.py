"""Studies on a real SLURM cluster through dask-jobqueue (``experiments/slurm_cluster.py``, as
the how-to runs it), with a worker job preempted mid-fit: every run and trial is present, and
the preempted comparison fit resumed from its checkpoint to the uninterrupted result.

The tests marked ``slurm`` need a SLURM cluster: ``.ci/slurm/start.sh`` starts one on this
machine (CI runs them after the default suite: ``pytest -m slurm``). The others, in the default
suite, start the script's Dask scheduler without submitting a job and check that it is closed
to strangers: loopback only on one node, TLS with the cluster's own certificate across nodes.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.slurm_cluster import client_settings, make_cluster, parse
from pyrodip.run.results import read_dataset
from pyrodip.studies.compare import Comparison, run_comparison

ROOT = Path(__file__).parents[2]
STUDY = """
methods = ["mfvi"]
images = ["sample:phantom"]
seeds = [0, 1]

[settings]
size = 32
steps = 1200
samples = 4
"""
#: The classical baselines: BM3D differs by up to 2.4e-7 between two processes.
CLASSICAL = ("baseline", "baselines", "classical_psnr", "classical_ssim", "baseline_psnr")


def wait_for(condition, timeout: float, what: str, command: subprocess.Popen | None = None):
    """``condition()`` once it is true; fails after ``timeout`` s, or when ``command`` ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if command is not None and command.poll() is not None:
            raise AssertionError(f"the command ended ({command.returncode}) before {what}: "
                                 f"{command.stderr.read()}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask cluster of one SLURM worker job (replaced when it is preempted): its scheduler's
    address and the job name."""
    if shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode:
        pytest.skip("no SLURM cluster here: start one with .ci/slurm/start.sh")
    pytest.importorskip("dask_jobqueue")
    folder = tmp_path_factory.mktemp("slurm")
    name = f"pyrodip-test-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "experiments" / "slurm_cluster.py"), "--jobs", "1",
         "--memory", "2GB", "--job-name", name, "--log-directory", str(folder / "logs")],
        stdout=subprocess.PIPE, text=True, cwd=folder, env=env)
    address = process.stdout.readline().strip()
    assert address.startswith("tcp://"), address
    yield address, name, folder
    process.terminate()
    process.wait(timeout=60)
    subprocess.run(["scancel", "--name", name], check=False)


def jobs(name: str) -> list[str]:
    """The ids of this cluster's running SLURM jobs."""
    listed = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i", "--name", name],
                            capture_output=True, text=True, check=True)
    return listed.stdout.split()


def preempt(name: str) -> str:
    """Cancel the cluster's running job, as SLURM preemption does (SIGTERM, then SIGKILL)."""
    job = wait_for(lambda: jobs(name), 60, "a running worker job")[0]
    subprocess.run(["scancel", job], check=True)
    return job


def pyrodip(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pyrodip.cli", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slurm
def test_compare_on_slurm_survives_a_preempted_job(cluster, tmp_path):
    address, name, _ = cluster
    (tmp_path / "study.toml").write_text(STUDY)
    began = time.monotonic()
    command = pyrodip("compare", "study.toml", "--out", "out", "--scheduler", address,
                      "--checkpoint-every", "20", "--quiet", cwd=tmp_path)
    runs = tmp_path / "out" / "runs"
    wait_for(lambda: list(runs.glob("*.checkpoint.pt")), 300, "a fit's first checkpoint",
             command)
    time.sleep(2)
    preempted = preempt(name)
    out, err = command.communicate(timeout=600)
    seconds = time.monotonic() - began
    assert command.returncode == 0, err
    study = read_dataset(tmp_path / "out" / "comparison.nc")
    assert study["status"].values.ravel().tolist() == ["ok", "ok"]
    resumed = {seed: json.loads(read_dataset(runs / f"phantom-mfvi-seed{seed}.nc")
                                .attrs["resumed_at"]) for seed in (0, 1)}
    assert resumed[0] and resumed[0][0] >= 20 and resumed[1] == [], resumed
    assert preempted not in jobs(name)  # the study finished on the job that replaced it
    reference = run_comparison(Comparison.from_toml(tmp_path / "study.toml"),
                               tmp_path / "reference", progress=False)
    for variable in study.data_vars:
        if "time" in variable:
            continue
        if variable in CLASSICAL:
            np.testing.assert_allclose(study[variable], reference[variable], atol=1e-6)
        else:
            np.testing.assert_array_equal(study[variable], reference[variable])
    print(f"compare on SLURM, preempted at step {resumed[0][0]}: {seconds:.0f} s")


@pytest.mark.slurm
def test_bo_on_slurm_survives_a_preempted_job(cluster, tmp_path):
    address, name, _ = cluster
    began = time.monotonic()
    command = pyrodip("bo", "--image", "sample:phantom", "--size", "32", "--steps", "1200",
                      "--samples", "2", "--param", "prior_scale=0.01:0.4:log",
                      "--init-points", "2", "--rounds", "1", "--batch", "1", "--scheduler",
                      address, "--out", "study", "--quiet", cwd=tmp_path)
    log = tmp_path / "study" / "trials.jsonl"
    wait_for(lambda: log.exists() and "submitted" in log.read_text(), 300, "a trial", command)
    time.sleep(6)  # mid-fit: a trial takes about 25 s here
    preempt(name)
    out, err = command.communicate(timeout=600)
    assert command.returncode == 0, err
    dataset = read_dataset(tmp_path / "study" / "bo.nc")
    assert dataset["status"].values.tolist() == ["ok", "ok", "ok"]
    assert "3 trials (3 ok, 0 failed)" in out
    print(f"bo on SLURM, one job preempted: {time.monotonic() - began:.0f} s")


def test_a_single_node_cluster_listens_on_loopback_only():
    pytest.importorskip("dask_jobqueue")
    from distributed.utils import get_ip

    cluster = make_cluster(parse([]))
    try:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        assert "--host 127.0.0.1" in cluster.job_script()  # the workers too
        outside = get_ip()  # the address others reach this machine at
        if outside != "127.0.0.1":
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outside, int(address.rsplit(":", 1)[1])), timeout=5)
    finally:
        cluster.close()


def test_a_multi_node_cluster_refuses_clients_without_its_certificate(tmp_path):
    pytest.importorskip("dask_jobqueue")
    pytest.importorskip("cryptography")
    import dask
    from distributed import Client
    from distributed.security import Security

    cluster = make_cluster(parse(["--multi-node", "--shared-directory", str(tmp_path)]))
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://") and cluster.security.require_encryption
        script = cluster.job_script()
        handed = [script.split(f"--tls-{key} ")[1].split()[0] for key in ("ca-file", "cert", "key")]
        assert all(Path(path).parent == tmp_path and Path(path).stat().st_mode & 0o777 == 0o600
                   for path in handed)  # the jobs' certificate: readable by the user only
        for stranger, security in ((address, Security.temporary()),  # another certificate
                                   (address.replace("tls://", "tcp://"), None)):  # no TLS
            with pytest.raises((OSError, TimeoutError)):
                Client(stranger, security=security, timeout=3)
        settings = client_settings(cluster.security, str(tmp_path))  # what main prints
        assert all(Path(path).stat().st_mode & 0o777 == 0o600 for name, path in
                   settings.items() if name.startswith("DASK_DISTRIBUTED__COMM__TLS"))
        given = {name.removeprefix("DASK_").lower().replace("__", "."): value
                 for name, value in settings.items()}  # as Dask reads them from the environment
        with dask.config.set(given), Client(address, timeout=10) as client:
            assert client.scheduler_info()["address"] == address
    finally:
        cluster.close()
