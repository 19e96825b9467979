"""Interrupt ``pyrodip run``, ``compare`` and ``bo`` at random moments and resume them until
they finish; each result must equal an uninterrupted run's, and no result set may be partial.

For each kind, one uninterrupted reference is run first. Then every trial starts the command
in a new folder, and up to ``--kills`` times waits a random time (5 % to 70 % of the
reference's duration), sends SIGTERM or SIGKILL (at random) to the command's whole process
group (as SLURM preemption and a terminal's Ctrl-C do), checks the folder, and resumes:
``run --resume DIR`` when the run left a checkpoint (the first command again when it left
nothing; nothing when its result set is whole and no checkpoint is left), the same ``compare``
command, ``bo --resume DIR`` once the study exists. The last resume runs to the end. A trial
passes when the command finished, its result equals the reference (every data variable of the
fit exactly, but wall times; the classical baselines to 1e-6, see :data:`CLASSICAL`), and after
every interruption the folder held the previous complete result set or none
(:func:`pyrodip.io.files.check_result_set`) and only whole NetCDF files. A trial that finished
before its first interruption is run again (it interrupted nothing).

Each trial's verdict is a line of ``OUT/trials.jsonl``; trials already there are skipped, so
an interrupted stress run continues. Run the kinds as two processes of one thread each::

    OMP_NUM_THREADS=1 python benchmarks/stress.py --kinds run compare --out runs/stress &
    OMP_NUM_THREADS=1 python benchmarks/stress.py --kinds bo --out runs/stress
    python benchmarks/stress.py --report --out runs/stress

Two kinds aim at what items of issue 35 added. ``compare-set`` and ``bo-set`` kill (SIGTERM or
SIGKILL) a command at a random moment while it writes a study's set (from the moment its
``.staging`` folder appears to the moment an uninterrupted write has moved the set into
place): ``compare`` of two seeds over
a set of one seed (every run already on disk), ``bo --resume --rounds 1`` over a set of two
trials. The set must then be whole (:func:`pyrodip.io.files.check_result_set`, which also
finishes a move that was cut short) and be the old one or the new one, its table or figures
of the same study as its dataset. ``bo-trial`` kills a one-trial ``bo`` at a random moment
after its fit saved a checkpoint and resumes it (``bo --resume``): the trial must resume from
the checkpoint (``resumed_at`` in ``trials.jsonl``: no step run twice) and ``bo.nc`` equal an
uninterrupted study's.

``--smoke``: one trial of each of ``--kinds`` (default ``run``), one interruption (the test
suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pyrodip.io.files import COMMITTED, MANIFEST, STAGING, check_result_set
from pyrodip.run.results import read_dataset

PYRODIP = [sys.executable, "-m", "pyrodip.cli"]
STUDY = """
methods = ["dip", "mfvi"]
images = ["sample:phantom"]
seeds = [0, 1]

[settings]
size = 32
steps = {steps}
samples = 4
"""
TRIALS = {"run": 20, "compare": 10, "bo": 10, "compare-set": 10, "bo-set": 10, "bo-trial": 10}
#: The kinds whose kills aim at a study's write, and the number of seeds (compare) or trials
#: (bo) of their old and new sets.
SETS = {"compare-set": (1, 2), "bo-set": (2, 3)}
BO = ["--image", "sample:phantom", "--size", "32", "--samples", "2", "--param",
      "prior_scale=0.01:0.4:log", "--batch", "1", "--workers", "1", "--quiet"]


def commands(kind: str, folder: Path, steps: int) -> tuple[list[str], list[str] | None]:
    """The command of a ``kind`` trial in ``folder``, and the one that resumes it (None: the
    first command again); no command (``[]``) when a run's result is whole and complete."""
    if kind == "run":
        if (folder / MANIFEST).exists() and not (folder / "checkpoint.pt").exists():
            return [], None  # the result is whole and the fit ended: nothing to resume
        first = ["run", "--image", "sample:phantom", "--size", "32", "--steps", str(steps),
                 "--samples", "4", "--checkpoint-every", "25", "--out", str(folder), "--quiet"]
        resume = ["run", "--resume", str(folder), "--quiet"]
        return first, resume if (folder / "checkpoint.pt").exists() else None
    if kind == "compare":
        study = folder.parent / f"{folder.name}.toml"
        study.write_text(STUDY.format(steps=steps))
        return ["compare", str(study), "--out", str(folder), "--checkpoint-every", "25",
                "--quiet"], None
    first = ["bo", "--image", "sample:phantom", "--size", "32", "--steps", str(steps),
             "--samples", "2", "--param", "prior_scale=0.01:0.4:log", "--init-points", "3",
             "--rounds", "3", "--batch", "1", "--workers", "1", "--out", str(folder), "--quiet"]
    resume = ["bo", "--resume", str(folder), "--workers", "1", "--quiet"]
    return first, resume if (folder / "study.json").exists() else None


def result_file(kind: str, folder: Path) -> Path:
    return folder / {"run": "result.nc", "compare": "comparison.nc", "bo": "bo.nc"}[kind]


def start(argv: list[str], log: Path) -> subprocess.Popen:
    """The command in a session of its own, its stderr appended to ``log``."""
    with open(log, "a") as stderr:
        return subprocess.Popen([*PYRODIP, *argv], stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)


def interrupt(process: subprocess.Popen, signum: int) -> int:
    """Send ``signum`` to the command's process group; its exit status (workers it left are
    killed after 30 s)."""
    with _suppress_missing():
        os.killpg(process.pid, signum)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
    deadline = time.monotonic() + 30
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with _suppress_missing():
        os.killpg(process.pid, signal.SIGKILL)
    return code


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class _suppress_missing:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is ProcessLookupError


def folder_problems(kind: str, folder: Path) -> list[str]:
    """What is partial in ``folder`` after an interruption: a result set whose files are not
    the ones its manifest lists, result files outside a set, or an unreadable NetCDF file."""
    problems = []
    if (folder / MANIFEST).exists() or (folder / ".committed").exists():
        try:
            check_result_set(folder)
        except Exception as error:  # noqa: BLE001 - recorded, the trial fails
            problems.append(f"result set: {error}")
    elif any((folder / name).exists() for name in (result_file(kind, folder).name, "panel.png",
                                                   "table.md", "best.png")):
        problems.append("result files without their set's manifest")
    for path in [*folder.glob("*.nc"), *folder.glob("runs/*.nc")]:
        try:
            read_dataset(path)
        except Exception as error:  # noqa: BLE001
            problems.append(f"{path.name}: {error}")
    return problems


#: The classical baselines' variables: BM3D differs by up to 2.4e-7 between two uninterrupted
#: processes (its FFT library's own choice of algorithm), so these are compared to 1e-6.
CLASSICAL = ("baseline", "baselines", "classical_psnr", "classical_ssim", "baseline_psnr")


def same_result(kind: str, folder: Path, reference: Path) -> list[str]:
    """The data variables that differ from the reference's (wall times left out; the fit's
    exactly, the classical baselines' to 1e-6)."""
    got, want = read_dataset(result_file(kind, folder)), read_dataset(result_file(kind,
                                                                                  reference))
    names = sorted(set(got.data_vars) | set(want.data_vars))
    differ = []
    for name in names:
        if "time" in name:
            continue
        if name not in got or name not in want:
            differ.append(f"{name} missing")
        elif name in CLASSICAL:
            if not np.allclose(got[name].values, want[name].values, rtol=0, atol=1e-6,
                               equal_nan=True):
                differ.append(name)
        elif not np.array_equal(got[name].values, want[name].values, equal_nan=_float(want[name])):
            differ.append(name)
    return differ


def _float(variable) -> bool:
    return np.issubdtype(variable.dtype, np.floating)


def reference(kind: str, out: Path, steps: int) -> tuple[Path, float]:
    """The uninterrupted run (run once, then reused) and its duration in s."""
    folder = out / f"{kind}-reference"
    record = out / f"{kind}-reference.json"
    if record.exists():
        return folder, json.loads(record.read_text())["seconds"]
    shutil.rmtree(folder, ignore_errors=True)
    first, _ = commands(kind, folder, steps)
    log = out / f"{kind}-reference.log"
    began = time.perf_counter()
    if start(first, log).wait() != 0:
        raise SystemExit(f"the reference {kind} failed: see {log}")
    seconds = time.perf_counter() - began
    record.write_text(json.dumps({"seconds": seconds}))
    return folder, seconds


def trial(kind: str, number: int, out: Path, steps: int, kills: int, seed: int | str) -> dict:
    """One interrupted-and-resumed command; its verdict."""
    rng = random.Random(f"{seed}-{kind}-{number}")
    ref, seconds = reference(kind, out, steps)
    folder = out / f"{kind}-{number:02d}"
    shutil.rmtree(folder, ignore_errors=True)
    log = out / f"{kind}-{number:02d}.log"
    log.unlink(missing_ok=True)
    interruptions, problems = [], []
    for attempt in range(kills + 1):
        first, resume = commands(kind, folder, steps)
        if not first:
            code = 0
            break
        process = start(resume or first, log)
        if attempt == kills:  # the last one runs to the end
            code = process.wait()
            break
        delay = rng.uniform(0.05, 0.7) * seconds
        signum = rng.choice([signal.SIGTERM, signal.SIGKILL])
        try:
            code = process.wait(timeout=delay)  # it finished before the interruption
            break
        except subprocess.TimeoutExpired:
            pass
        code = interrupt(process, signum)
        interruptions.append({"after_s": round(delay, 2), "signal": signum.name, "exit": code})
        problems += [f"after {signum.name}: {p}" for p in folder_problems(kind, folder)]
    verdict = {"kind": kind, "trial": number, "interruptions": interruptions, "exit": code,
               "partial": problems}
    if code == 0:
        verdict["differ"] = same_result(kind, folder, ref)
    else:
        verdict["error"] = log.read_text()[-500:]
    verdict["ok"] = code == 0 and not problems and not verdict.get("differ")
    return verdict


def run(kinds: list[str], out: Path, trials: dict[str, int], steps: dict[str, int], kills: int,
        seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = {(r["kind"], r["trial"]) for r in read_log(log)}
    for kind in kinds:
        for number in range(trials[kind]):
            if (kind, number) in done:
                continue
            verdict, again = one_trial(kind, number, out, steps[kind], kills, seed), 0
            while not verdict["interruptions"] and again < 5:  # it finished first: again
                again += 1
                verdict = one_trial(kind, number, out, steps[kind], kills, f"{seed}.{again}")
            with open(log, "a") as file:
                file.write(json.dumps(verdict) + "\n")
            print(f"{kind} {number}: {'ok' if verdict['ok'] else 'FAILED'} "
                  f"{[i['signal'] for i in verdict['interruptions']]}", flush=True)


def one_trial(kind: str, number: int, out: Path, steps: int, kills: int,
              seed: int | str) -> dict:
    """One trial of ``kind``; its verdict."""
    if kind in SETS:
        return set_trial(kind, number, out, steps, seed)
    if kind == "bo-trial":
        return bo_trial(number, out, steps, seed)
    return trial(kind, number, out, steps, kills, seed)


def read_log(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def report(out: Path) -> str:
    """The tables of docs/reliability.md from the trials logged in ``out`` (those with rows)."""
    records = read_log(out / "trials.jsonl")
    tables = []
    for header, kinds in (
        ("| command | trials | identical to uninterrupted | interruptions (SIGTERM / SIGKILL) "
         "| partial result sets |", ("run", "compare", "bo")),
        ("| kills aimed at | trials | whole set, or resumed and identical | interruptions "
         "(SIGTERM / SIGKILL) | old / new set; resumed at step |", tuple(SETS) + ("bo-trial",)),
    ):
        rows = []
        for kind in kinds:
            mine = [r for r in records if r["kind"] == kind]
            signals = [i["signal"] for r in mine for i in r["interruptions"]]
            if kind in SETS:
                last = ", ".join(f"{sum(r['set'] == name for r in mine)} {name}"
                                 for name in ("old", "new"))
            elif kind == "bo-trial":
                last = ", ".join(str(r["resumed_at"][0][0]) if r["resumed_at"] and
                                 r["resumed_at"][0] else "-" for r in mine)
            else:
                last = str(sum(len(r["partial"]) for r in mine))
            rows += [f"| {kind} | {len(mine)} | {sum(r['ok'] for r in mine)} of {len(mine)} | "
                     f"{len(signals)} ({signals.count('SIGTERM')} / {signals.count('SIGKILL')})"
                     f" | {last} |"] if mine else []
        tables += [header, "|---|---|---|---|---|", *rows, ""] if rows else []
    return "\n".join(tables).strip()


def set_commands(kind: str, folder: Path, steps: int, new: bool) -> list[str]:
    """The command that writes the old (``new`` False) or the new set of a ``*-set`` kind."""
    if kind == "compare-set":
        study = folder.parent / f"{folder.name}-{'new' if new else 'old'}.toml"
        study.write_text(STUDY.format(steps=steps).replace("seeds = [0, 1]", "seeds = [0]"
                                                           if not new else "seeds = [0, 1]"))
        return ["compare", str(study), "--out", str(folder), "--quiet"]
    if new:
        return ["bo", "--resume", str(folder), "--rounds", "1", "--workers", "1", "--quiet"]
    return ["bo", "--steps", str(steps), "--init-points", "2", "--rounds", "0", *BO,
            "--out", str(folder)]


def which_set(kind: str, folder: Path) -> str:
    """``old`` or ``new``: the set in ``folder`` (checked whole, its move finished); a problem
    otherwise."""
    try:
        check_result_set(folder)
    except Exception as error:  # noqa: BLE001 - recorded, the trial fails
        return f"result set: {error}"
    if kind == "compare-set":
        seeds = read_dataset(folder / "comparison.nc").sizes["seed"]
        if f"over {seeds} seed" not in (folder / "table.md").read_text():
            return f"table.md is not the table of comparison.nc ({seeds} seeds)"
        size = seeds
    else:
        size = read_dataset(folder / "bo.nc").sizes["trial"]
    return {number: name for name, number in zip(("old", "new"), SETS[kind], strict=True)}.get(
        size, f"a set of {size}")


def set_trial(kind: str, number: int, out: Path, steps: int, seed: int | str) -> dict:
    """Kill the command writing a study's new set over its old one at a random moment of the
    write; the set left must be whole, old or new."""
    rng = random.Random(f"{seed}-{kind}-{number}")
    template, log = out / f"{kind}-template", out / f"{kind}-{number:02d}.log"
    record = out / f"{kind}-template.json"
    if not record.exists():  # the old set, every fit of the new one done; the write's duration
        shutil.rmtree(template, ignore_errors=True)
        for new in ((True, False) if kind == "compare-set" else (False,)):
            if start(set_commands(kind, template, steps, new), log).wait() != 0:
                raise SystemExit(f"the {kind} template failed: see {log}")
        timing = out / f"{kind}-timing"
        shutil.copytree(template, timing)
        process = start(set_commands(kind, timing, steps, True), log)
        while not (timing / STAGING).exists() and process.poll() is None:
            time.sleep(0.002)
        began = time.perf_counter()  # the write, until the set is moved into place
        while (timing / STAGING).exists() or (timing / COMMITTED).exists():
            time.sleep(0.002)
        record.write_text(json.dumps({"write_s": time.perf_counter() - began}))
        if process.wait() != 0:
            raise SystemExit(f"the {kind} write failed: see {log}")
    write_s = json.loads(record.read_text())["write_s"]
    folder = out / f"{kind}-{number:02d}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    process = start(set_commands(kind, folder, steps, True), log)
    while not (folder / STAGING).exists() and process.poll() is None:
        time.sleep(0.002)
    delay, signum = rng.uniform(0, write_s), rng.choice([signal.SIGTERM, signal.SIGKILL])
    time.sleep(delay)
    code = interrupt(process, signum)
    found = which_set(kind, folder)
    return {"kind": kind, "trial": number, "exit": code, "set": found, "ok": found in
            ("old", "new"), "interruptions": [{"after_s": round(delay, 3), "signal": signum.name,
                                                "exit": code}], "partial": []}


def bo_trial(number: int, out: Path, steps: int, seed: int | str) -> dict:
    """Kill a one-trial ``bo`` after its fit saved a checkpoint, at a random moment, and resume
    it; the trial must resume from the checkpoint and equal an uninterrupted one."""
    rng = random.Random(f"{seed}-bo-trial-{number}")
    first = ["bo", "--steps", str(steps), "--init-points", "1", "--rounds", "0", *BO,
             "--checkpoint-every", "25"]
    log = out / f"bo-trial-{number:02d}.log"
    reference = out / "bo-trial-reference"
    if not (reference / MANIFEST).exists():
        shutil.rmtree(reference, ignore_errors=True)
        if start([*first, "--out", str(reference)], log).wait() != 0:
            raise SystemExit(f"the reference bo-trial failed: see {log}")
    folder = out / f"bo-trial-{number:02d}"
    shutil.rmtree(folder, ignore_errors=True)
    process = start([*first, "--out", str(folder)], log)
    while not list(folder.glob("trial*.checkpoint.pt")) and process.poll() is None:
        time.sleep(0.01)
    delay, signum = rng.uniform(0, 2.0), rng.choice([signal.SIGTERM, signal.SIGKILL])
    time.sleep(delay)
    killed = interrupt(process, signum)
    code = start(["bo", "--resume", str(folder), "--workers", "1", "--checkpoint-every", "25",
                  "--quiet"], log).wait()
    trials = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    resumed = [r["resumed_at"] for r in trials if r["event"] == "finished"]
    verdict = {"kind": "bo-trial", "trial": number, "exit": code, "resumed_at": resumed,
               "interruptions": [{"after_s": round(delay, 3), "signal": signum.name,
                                  "exit": killed}],
               "partial": [f"after {signum.name}: {p}" for p in folder_problems("bo", folder)]}
    verdict["differ"] = same_result("bo", folder, reference) if code == 0 else ["failed"]
    verdict["ok"] = (code == 0 and not verdict["differ"] and not verdict["partial"]
                     and len(resumed) == 1 and len(resumed[0]) == 1 and resumed[0][0] >= 25)
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/stress"))
    parser.add_argument("--kinds", nargs="+", choices=list(TRIALS),
                        help="what to interrupt [all; run with --smoke]")
    parser.add_argument("--kills", type=int, default=3, help="interruptions per trial [3]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true", help="print the table and stop")
    parser.add_argument("--trials", type=int, help="trials of each kind [TRIALS]")
    parser.add_argument("--smoke", action="store_true",
                        help="one trial of each kind, one interruption, short fits")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.out))
        return 0
    steps = {"run": 300, "compare": 150, "bo": 60, "compare-set": 30, "bo-set": 20,
             "bo-trial": 150}
    kinds, trials, kills = args.kinds or list(TRIALS), dict(TRIALS), args.kills
    if args.smoke:
        kinds, kills = args.kinds or ["run"], 1
        trials, steps = dict.fromkeys(TRIALS, 1), {**steps, "run": 100, "bo-trial": 75}
    if args.trials is not None:
        trials = dict.fromkeys(TRIALS, args.trials)
    run(kinds, args.out, trials, steps, kills, args.seed)
    print(report(args.out))
    return 0 if all(r["ok"] for r in read_log(args.out / "trials.jsonl")) else 1


if __name__ == "__main__":
    sys.exit(main())
