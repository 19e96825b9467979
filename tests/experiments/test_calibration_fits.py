"""The calibration study's fits (experiments/calibration_fits.py): its stages' fits and their
settings."""

from experiments.calibration_fits import DOMAINS, HOOKS, Job, jobs, runs


def test_stages_tune_on_the_second_images_and_report_on_the_first():
    tune, goal = jobs("tune"), jobs("goal")
    assert {job.image for job in tune} == {domain[1] for domain in DOMAINS.values()}
    assert {job.image for job in goal} == {domain[0] for domain in DOMAINS.values()}
    assert len(goal) == len(DOMAINS) * 4 * 3  # mfvi, mfvi uncalibrated, mcdropout, sgld; 3 seeds
    assert {job.domain for job in jobs("diagnose")} == {"xray", "oct"}
    names = [job.name for job in tune + goal + jobs("diagnose")]
    assert len(set(names)) == len(names)
    config = Job("goal", "mri", DOMAINS["mri"][0], "sgld", 1).config()
    assert (config.task, config.factor, config.size, config.steps) == ("superres", 4, 128, 1000)


def test_smoke_runs_are_small_and_skip_the_baselines():
    smoke = runs("tune", smoke=True)
    assert [run.name for run in smoke] == [job.name for job in jobs("tune")]
    assert {(run.config.size, run.config.steps) for run in smoke} == {(64, 30)}
    assert not HOOKS.baselines  # the report reads no baseline


def test_the_ensemble_stage_fits_ensembles_of_the_goal_observations():
    ensemble = jobs("ensemble")
    assert {job.domain for job in ensemble} == {"mri", "ct"}
    assert {job.image for job in ensemble} == {DOMAINS["mri"][0], DOMAINS["ct"][0]}
    configs = [job.config() for job in ensemble]
    assert {(c.method, c.ensemble, c.resolved("calibration")) for c in configs} == {
        ("mfvi", 4, "scale"), ("dip-es", 4, "scale")}
    goal = {job.config().to_json() for job in jobs("goal")}
    assert all(c.replace(ensemble=1, calibration=None, method="mfvi").to_json() in goal
               for c in configs)  # the same observation: image, task, seed
