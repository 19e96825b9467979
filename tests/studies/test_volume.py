"""Volumes reconstructed slice by slice (``pyrodip run --slices``, pyrodip.studies.volume):
assembly, resume, results in the scanner's format, and bad input through the CLI."""

import nibabel
import numpy as np
import pydicom
import pytest
import torch
from conftest import exit_code, write_dicom
from pydicom.uid import generate_uid

import pyrodip.studies.grid
from pyrodip.errors import InvalidInputError
from pyrodip.evaluate.metrics import psnr
from pyrodip.io.images import load_image
from pyrodip.io.volumes import Volume
from pyrodip.run.config import RunConfig
from pyrodip.run.results import read_dataset
from pyrodip.seeding import generator
from pyrodip.studies.volume import slice_range, volume_config

FAST = ["--steps", "3", "--samples", "2", "--quiet"]
AFFINE = np.array([[0.8, 0, 0, -40.0], [0, 0.8, 0, -25.0], [0, 0, 2.5, 12.0], [0, 0, 0, 1]])


def clean_volume(image: np.ndarray, count: int) -> np.ndarray:
    """``count`` slices (H, W) of ``image``, each shifted and dimmed a little."""
    return np.stack([np.roll(image, k - count // 2, axis=0) * (0.8 + 0.2 * k / count)
                     for k in range(count)])


def noisy(slices: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    noise = torch.randn(slices.shape, generator=generator(seed, "noise")).numpy()
    return np.clip(slices + std * noise, 0, 1)


def save_nifti(path, slices: np.ndarray, affine=AFFINE) -> None:
    """Slices as pyrodip shows them, stored in RAS voxel order (the inverse of its view)."""
    voxels = slices[:, ::-1, ::-1].transpose(2, 1, 0)
    nibabel.save(nibabel.Nifti1Image(voxels.astype(np.float32), affine), path)


@pytest.fixture
def volume(tmp_path, phantom64):
    """A 4-slice 64 px NIfTI volume with Gaussian noise 0.05: (path, clean slices)."""
    clean = clean_volume(phantom64[0].numpy(), 4)
    path = tmp_path / "volume.nii.gz"
    save_nifti(path, noisy(clean, 0.05))
    return path, clean


def test_slice_ranges_are_checked():
    assert slice_range(":2", 5) == range(0, 2) and slice_range("3:", 5) == range(3, 5)
    for text in ("4:9", "3:2", "x", "5"):
        with pytest.raises(InvalidInputError, match="--slices"):
            slice_range(text, 5)


def test_an_observed_volume_s_noise_is_estimated_where_the_task_observes_images(volume):
    path, clean = volume
    images = Volume(noisy(clean, 0.05), path, "nifti", 0.0, 1.0)
    denoise = volume_config(RunConfig(image=str(path), observed=True), images, range(4))
    assert denoise.noise_std == pytest.approx(0.05, rel=0.25) and denoise.slice_index is None
    ct = RunConfig(image=str(path), task="ct", observed=True)  # a sinogram: estimated per fit
    assert volume_config(ct, images, range(4)).noise_std is None


def test_volume_end_to_end(volume, tmp_path, capsys):
    path, _ = volume
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(path), "--observed", "--slices", "all",
                      "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "estimated over the 4 slices" in printed and "reconstruction.nii.gz" in printed
    result = read_dataset(out / "result.nc")
    assert result.sizes["slice"] == 4 and list(result["slice"].values) == [0, 1, 2, 3]
    assert result["mean"].dims == ("slice", "channel", "y", "x")
    # the 64 px phantom's sharp edges look a little like noise (at 128 px: within 15 %)
    assert result.attrs["volume_noise_estimate"] == pytest.approx(0.05, rel=0.25)
    written = nibabel.load(out / "reconstruction.nii.gz")
    assert np.array_equal(written.affine, nibabel.load(path).affine)
    assert written.shape == (64, 64, 4)
    # the written voxels are the result's slices, back in the input's orientation
    shown = written.get_fdata().transpose(2, 1, 0)[:, ::-1, ::-1]
    assert np.allclose(shown, result["mean"].values[:, 0], atol=1e-5)
    assert nibabel.load(out / "std.nii.gz").shape == (64, 64, 4)
    assert (out / "panel.png").exists()


def test_a_simulated_volume_keeps_curves_and_scores_per_slice(volume, tmp_path, capsys):
    path, _ = volume
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(path), "--slices", "0:2", "--out", str(out),
                      *FAST]) == 0
    assert "reconstruction  PSNR" in capsys.readouterr().out
    result = read_dataset(out / "result.nc")
    assert result["psnr"].dims == ("slice", "step")  # the curve, not the final score
    assert result["mean_psnr"].dims == ("slice",) and result["psnr_input"].dims == ("slice",)
    assert np.isfinite(result["mean_psnr"]).all()


def test_a_slice_range_is_written_where_it_lies(volume, tmp_path):
    path, _ = volume
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(path), "--observed", "--slices", "1:3",
                      "--out", str(out), *FAST]) == 0
    written = nibabel.load(out / "reconstruction.nii.gz")
    assert written.shape == (64, 64, 2)
    assert np.allclose(written.affine[:3, 3], AFFINE[:3, 3] + [0, 0, 2.5])


def test_an_interrupted_volume_fits_only_the_slices_it_lacks(volume, tmp_path, monkeypatch):
    path, _ = volume
    out = tmp_path / "out"
    fitted = []
    fit_runs = pyrodip.studies.grid.fit_runs

    def interrupted(configs, paths, *options):
        if configs[0].slice_index == 2 and not fitted.count(2):
            fitted.append(2)
            raise KeyboardInterrupt
        fitted.extend(config.slice_index for config in configs)
        return fit_runs(configs, paths, *options)

    monkeypatch.setattr(pyrodip.studies.grid, "fit_runs", interrupted)
    argv = ["run", "--image", str(path), "--observed", "--slices", "all", "--out", str(out)]
    assert exit_code([*argv, *FAST]) == 130
    assert sorted(p.name for p in (out / "slices").iterdir()) == [
        "slice-0000.nc", "slice-0001.nc"]
    assert not (out / "result.nc").exists()
    before = (out / "slices" / "slice-0000.nc").stat().st_mtime_ns
    assert exit_code(["run", "--resume", str(out), "--quiet"]) == 0
    assert fitted == [0, 1, 2, 2, 3]  # the first two slices were not fitted again
    assert (out / "slices" / "slice-0000.nc").stat().st_mtime_ns == before
    assert read_dataset(out / "result.nc").sizes["slice"] == 4


def test_a_slice_that_keeps_failing_is_named_and_the_others_are_kept(volume, tmp_path,
                                                                     monkeypatch, capsys):
    path, _ = volume
    out = tmp_path / "out"
    fit_runs = pyrodip.studies.grid.fit_runs
    broken = {"on": True}

    def out_of_memory_at_slice_1(configs, paths, *options):
        if configs[0].slice_index == 1 and broken["on"]:
            raise MemoryError("out of memory")
        return fit_runs(configs, paths, *options)

    monkeypatch.setattr(pyrodip.studies.grid, "fit_runs", out_of_memory_at_slice_1)
    argv = ["run", "--image", str(path), "--observed", "--slices", "0:3", "--out", str(out)]
    assert exit_code([*argv, *FAST]) == 2
    err = capsys.readouterr().err
    assert "slice-0001 failed (MemoryError: out of memory); running it again" in err
    assert "1 of 3 slices failed (slice-0001: MemoryError: out of memory, after 2 attempts)" in err
    assert sorted(p.name for p in (out / "slices").glob("*.nc")) == [
        "slice-0000.nc", "slice-0002.nc"]
    assert not (out / "result.nc").exists()
    broken["on"] = False
    assert exit_code(["run", "--resume", str(out), "--quiet"]) == 0
    assert read_dataset(out / "result.nc").sizes["slice"] == 3


def test_slices_fitted_as_a_batch(volume, tmp_path):
    path, _ = volume
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(path), "--observed", "--slices", "0:2", "--batch",
                      "2", "--out", str(out), *FAST]) == 0
    result = read_dataset(out / "result.nc")
    assert result.sizes["slice"] == 2
    assert not np.allclose(result["mean"][0], result["mean"][1])


def test_slices_fitted_on_dask_workers(volume, tmp_path):
    """Worker processes write each slice's result (on a worker, xarray's default lock for the
    in-memory NetCDF was a cluster lock the scheduler refused)."""
    path, _ = volume
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(path), "--observed", "--slices", "0:2",
                      "--workers", "2", "--out", str(out), *FAST]) == 0
    assert read_dataset(out / "result.nc").sizes["slice"] == 2


def test_one_slice_of_a_volume_is_written_back_too(volume, tmp_path):
    path, _ = volume
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(path), "--observed", "--slice", "3",
                      "--out", str(out), *FAST]) == 0
    written = nibabel.load(out / "reconstruction.nii.gz")
    assert written.shape == (64, 64, 1)
    assert np.allclose(written.affine[:3, 3], AFFINE[:3, 3] + [0, 0, 3 * 2.5])


@pytest.fixture
def series(tmp_path, phantom64):
    """A 3-slice DICOM series (64 px, HU-like values through a rescale) in a folder."""
    folder = tmp_path / "series"
    folder.mkdir()
    slices = noisy(clean_volume(phantom64[0].numpy(), 3), 0.05)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    for k, image in enumerate(slices):
        write_dicom(
            folder / f"slice{2 - k}.dcm", np.round(image * 2000).astype(np.uint16),
            Modality="CT", PatientName="Test^Patient", PatientID="P1",
            StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
            FrameOfReferenceUID=frame_uid, SeriesNumber=3, InstanceNumber=k + 1,
            ImagePositionPatient=[-30.0, -30.0, 5.0 * k],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.9, 0.9],
            SliceThickness=5.0, RescaleSlope=1, RescaleIntercept=-1000,
        )
    return folder


def test_dicom_series_round_trip(series, tmp_path):
    out = tmp_path / "out"
    assert exit_code(["run", "--image", str(series), "--observed", "--slices", "all",
                      "--out", str(out), *FAST]) == 0
    files = sorted((out / "reconstruction").iterdir())
    assert len(files) == 3
    originals = {float(d.ImagePositionPatient[2]): d for d in
                 (pydicom.dcmread(path) for path in series.iterdir())}
    written = [pydicom.dcmread(path) for path in files]
    assert len({d.SeriesInstanceUID for d in written}) == 1
    for dataset in written:
        original = originals[float(dataset.ImagePositionPatient[2])]
        assert dataset.SeriesInstanceUID != original.SeriesInstanceUID
        assert dataset.SOPInstanceUID != original.SOPInstanceUID
        assert list(dataset.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert dataset[key].value == original[key].value, key
    result = read_dataset(out / "result.nc")
    back = np.stack([load_image(out / "reconstruction", k)[0] for k in range(3)])
    # read back through the rescale and scaled to [0, 1] over the written series
    assert np.corrcoef(back.ravel(), result["mean"].values.ravel())[0, 1] > 0.999
    assert len(list((out / "std").iterdir())) == 3


def two_series(folder, phantom64):
    folder.mkdir()
    for k in range(2):
        write_dicom(folder / f"{k}.dcm", np.zeros((64, 64)), SeriesInstanceUID=generate_uid())


@pytest.mark.parametrize("case, fragment", [
    ("empty folder", "no DICOM image"),
    ("two series", "2 series"),
    ("4-D NIfTI", "--volume"),
    ("slices outside", "outside the volume of 4 slices"),
    ("batch without slices", "--batch fits the slices of a volume: add --slices"),
    ("slice and slices", "--slice picks one slice"),
])
def test_bad_volume_input_through_the_cli(case, fragment, volume, tmp_path, phantom64, capsys):
    path, _ = volume
    argv = ["run", "--image", str(path), "--observed", "--slices", "all"]
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        argv[2] = str(tmp_path / "empty")
    elif case == "two series":
        two_series(tmp_path / "mixed", phantom64)
        argv[2] = str(tmp_path / "mixed")
    elif case == "4-D NIfTI":
        four_d = np.stack([phantom64[0].numpy()] * 6, -1).reshape(64, 64, 2, 3)
        nibabel.save(nibabel.Nifti1Image(four_d.astype(np.float32), AFFINE), tmp_path / "4d.nii")
        argv[2] = str(tmp_path / "4d.nii")
    elif case == "slices outside":
        argv[-1] = "2:9"
    elif case == "batch without slices":
        argv = argv[:-2] + ["--batch", "2"]
    elif case == "slice and slices":
        argv += ["--slice", "1"]
    out = tmp_path / "out"
    code = exit_code([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_goal_a_noisy_volume_of_16_slices(tmp_path, capsys):
    """The issue's goal: 16 slices of 128 px, Gaussian noise 0.05 not given, one command; the
    NIfTI written back keeps the affine and every slice gains at least 5 dB. (About 50
    minutes on two cores.)"""
    clean = clean_volume(load_image("sample:ct")[0], 16)
    path, out = tmp_path / "noisy.nii.gz", tmp_path / "out"
    save_nifti(path, noisy(clean, 0.05))
    assert exit_code(["run", "--image", str(path), "--observed", "--slices", "all",
                      "--workers", "2", "--out", str(out), "--quiet", *GOAL_SETTINGS]) == 0
    print(capsys.readouterr().out)
    written = nibabel.load(out / "reconstruction.nii.gz")
    assert np.array_equal(written.affine, nibabel.load(path).affine)
    result = read_dataset(out / "result.nc")
    assert abs(result.attrs["volume_noise_estimate"] / 0.05 - 1) <= 0.15
    gains = goal_table(clean, out)
    assert min(gains) >= 5, gains


def goal_table(clean: np.ndarray, out) -> list[float]:
    """Print each slice's PSNR gain over the noisy slice, of the written NIfTI and of BM3D (the
    result's baseline), against the clean slices; return the NIfTI's gains."""
    written = nibabel.load(out / "reconstruction.nii.gz")
    result = read_dataset(out / "result.nc")
    shown = written.get_fdata().transpose(2, 1, 0)[:, ::-1, ::-1].copy()
    images = {"mfvi": torch.from_numpy(shown)[:, None],
              "bm3d": torch.from_numpy(result["baseline"].values)}
    observed = torch.from_numpy(noisy(clean, 0.05))[:, None]
    truth = torch.from_numpy(clean)[:, None]
    noisy_psnr = psnr(observed, truth)
    gains = {name: (psnr(image.to(truth.dtype), truth) - noisy_psnr).tolist()
             for name, image in images.items()}
    print("slice | noisy PSNR | MFVI gain | BM3D gain | noise estimate")
    for k in range(len(clean)):
        print(f"{k} | {float(noisy_psnr[k]):.2f} | {gains['mfvi'][k]:+.2f} | "
              f"{gains['bm3d'][k]:+.2f} | {float(result['noise_estimate'][k]):.4f}")
    return gains["mfvi"]


#: The goal's settings: the defaults but 4000 steps (at 3000 the CT sample's PSNR still rises
#: by 0.6 dB per 500 steps; docs/howto-real-scans.md).
GOAL_SETTINGS = ["--steps", "4000"]
