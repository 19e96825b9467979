"""The step-time benchmark in its smoke mode, so that it cannot rot (no time is asserted)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "step_time.py"
KEYS = {"preset", "size", "device", "pyrodip_ms", "reference_ms", "dip_ms", "ratio_reference",
        "ratio_dip", "predictive_ratio", "peak_mem_mb"}


@pytest.fixture(scope="module")
def step_time():
    spec = importlib.util.spec_from_file_location("step_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_prints_the_table_and_writes_every_key(step_time, tmp_path, capsys):
    path = tmp_path / "steps.json"
    step_time.main(["--smoke", "--json", str(path)])
    printed = capsys.readouterr().out
    rows = json.loads(path.read_text())["results"]
    assert len(rows) == 1 and KEYS <= rows[0].keys()
    row = rows[0]
    assert (row["preset"], row["size"], row["device"]) == ("small", 32, "cpu")
    assert (row["channels"], row["threads"]) == (8, 1)  # the smoke mode's settings
    assert printed == step_time.table(rows) + "\n"  # the table shows what the file holds


def test_the_table_adds_the_captured_steps_where_a_row_has_them(step_time, tmp_path):
    step_time.main(["--smoke", "--json", str(tmp_path / "steps.json")])
    row = json.loads((tmp_path / "steps.json").read_text())["results"][0]
    assert "captured_ms" not in row  # measured on CUDA only
    row |= {"captured_ms": 2.0, "dip_captured_ms": 1.6, "busy_ms": 1.0, "ratio_captured": 0.13,
            "ratio_captured_dip": 1.25}
    last = step_time.table([row]).splitlines()[-1].split()
    assert last == ["small", "32", "2.00ms", "1.60ms", "1.00ms", "0.13", "1.25", "2.00"]


def test_ratios_are_medians_of_interleaved_pairs(step_time):
    times = {"a": [2.0, 3.0, 10.0], "b": [1.0, 1.0, 1.0]}
    assert step_time.paired_ratio(times, "a", "b") == 3.0
    calls = []
    variants = {"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}
    measured = step_time.interleaved(variants, repeats=2, warmup=1, device=torch.device("cpu"))
    assert calls == ["x", "y", "x", "y", "y", "x"]  # warm-up, then a rotating order
    assert {name: len(seconds) for name, seconds in measured.items()} == {"x": 2, "y": 2}


def test_fit_curves_smoke_run_compares_with_itself(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fit_curves", SCRIPT.parent / "fit_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    module.main([str(first), "--smoke"])
    capsys.readouterr()
    module.main([str(second), "--smoke", "--compare", str(first)])
    lines = capsys.readouterr().out.splitlines()[len(module.CASES):]
    assert len(lines) == len(module.CASES)
    assert all("PSNR differs from step None, by up to 0.0000 dB" in line for line in lines)
    curves = json.loads(first.read_text())
    assert set(curves) == set(module.CASES)
    assert all(len(case["psnr"]) == 3 and len(case["loss"]) == 2 for case in curves.values())


def test_batched_fits_smoke_run_reports_each_batch_against_one_fit(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("batched_fits",
                                                  SCRIPT.parent / "batched_fits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "batched.json"
    module.main(["--smoke", "--json", str(path)])
    printed = capsys.readouterr().out
    rows = json.loads(path.read_text())["results"]
    assert [row["batch"] for row in rows] == [1, 2]
    assert all(set(module.KEYS) <= row.keys() for row in rows)
    assert rows[0]["ratio_to_one"] == 1.0 and rows[1]["ratio_to_one"] > 0
    assert (rows[0]["device"], rows[0]["size"]) == ("cpu", 32)
    assert printed == module.table(rows) + "\n"


def test_the_stress_script_interrupts_a_run_and_finds_it_whole(tmp_path, capsys):
    """Its smoke mode: one run, interrupted once at random (SIGTERM or SIGKILL), resumed."""
    spec = importlib.util.spec_from_file_location("stress", SCRIPT.parent / "stress.py")
    stress = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress)
    assert stress.main(["--smoke", "--out", str(tmp_path)]) == 0
    [record] = stress.read_log(tmp_path / "trials.jsonl")
    assert len(record["interruptions"]) == 1 and record["ok"] and record["partial"] == []
    assert "| run | 1 | 1 of 1 |" in capsys.readouterr().out


def test_the_stress_script_kills_study_writes_and_bo_trials(tmp_path, capsys):
    """Its smoke mode for the study kinds: a kill while ``compare`` and ``bo`` write their set
    leaves a whole set, old or new; a BO trial killed after its first checkpoint resumes there
    to the uninterrupted study."""
    spec = importlib.util.spec_from_file_location("stress", SCRIPT.parent / "stress.py")
    stress = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress)
    kinds = ["compare-set", "bo-set", "bo-trial"]
    assert stress.main(["--smoke", "--kinds", *kinds, "--out", str(tmp_path)]) == 0
    records = {r["kind"]: r for r in stress.read_log(tmp_path / "trials.jsonl")}
    assert sorted(records) == sorted(kinds) and all(r["ok"] for r in records.values())
    assert {records[kind]["set"] for kind in kinds[:2]} <= {"old", "new"}
    assert records["bo-trial"]["resumed_at"][0][0] >= 25 and records["bo-trial"]["differ"] == []
    assert "| bo-trial | 1 | 1 of 1 |" in capsys.readouterr().out


def test_the_run_time_benchmark_times_both_fits_and_prints_their_ratio(capsys):
    spec = importlib.util.spec_from_file_location(
        "run_time", SCRIPT.with_name("run_time.py"))
    run_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_time)
    found = run_time.measure(32, dip_steps=6, repeats=2, steps=5)
    assert (found["steps"], found["dip_steps"], found["repeats"]) == (5, 6, 2)
    assert found["default_s"] > 0 and found["dip_s"] > 0
    assert run_time.main(["--smoke"]) == 0
    assert "default (20 steps)" in capsys.readouterr().out
