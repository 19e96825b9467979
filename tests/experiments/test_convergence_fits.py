"""The convergence study's fits (experiments/convergence_fits.py): its job lists and the
settings every fit shares."""

from pathlib import Path

from experiments import convergence_fits as fits


def test_jobs_cover_every_domain_image_seed_and_method_once():
    core, others = fits.jobs("core"), fits.jobs("others")
    images = sum(len(paths) for paths, _ in fits.DOMAINS.values())
    assert len(core) == images * 3 * 3  # dip, map, mfvi; 3 seeds
    assert {job.image for job in others} == {0}
    assert not [job for job in others if job.method == "mfvi-paper" and job.domain == "us"]
    long = fits.jobs("long")
    assert {(job.domain, job.image, job.method) for job in long} == {
        ("xray", 0, "mfvi"), ("oct", 0, "mfvi")}
    assert long[0].config(Path("unused")).steps == 3 * fits.STEPS
    names = [job.name for job in core + others + long]
    assert len(set(names)) == len(names)
    first = [job.image for job in core]
    assert first == sorted(first)  # the first images run before the second ones


def test_every_fit_holds_out_the_same_values_and_runs_to_the_end(tmp_path):
    dip = fits.Job("core", "oct", 0, "dip", 1).config(tmp_path)
    mfvi = fits.Job("core", "oct", 0, "mfvi", 1).config(tmp_path)
    assert dip.resolved("stop_rule") == "heldout" and dip.stop_patience == dip.steps == 3000
    assert mfvi.resolved("calibration") == "scale"
    assert (dip.heldout_fraction, dip.seed, dip.image) == (mfvi.heldout_fraction, 1, mfvi.image)
    skin = fits.Job("core", "skin", 1, "mfvi", 0).config(tmp_path)
    assert skin.mask.endswith("inpainting/skin2_mask.png")
