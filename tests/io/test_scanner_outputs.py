"""pyrodip.io.scanner_outputs: a run's reconstruction and std written in a volume input's format,
where they lie in it, and when a run writes none."""

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from pyrodip.io.scanner_outputs import scanner_output_note, write_scanner_outputs
from pyrodip.io.volumes import read_volume
from pyrodip.physics.tasks import TASKS

RNG = np.random.default_rng(0)
DATA = RNG.integers(-1000, 3000, (20, 24, 6), dtype=np.int16)  # (X, Y, Z): slices 24 x 20


def run_dataset(mean, std):
    """A run's result for slices ``(Z, h, w)`` (one slice: ``(h, w)``) of one channel."""
    dims = ("slice", "channel", "y", "x") if mean.ndim == 3 else ("channel", "y", "x")
    axis = 1 if mean.ndim == 3 else 0
    return xr.Dataset({"mean": (dims, np.expand_dims(mean, axis)),
                       "std_total": (dims, np.expand_dims(std, axis))})


@pytest.fixture
def volume(tmp_path):
    path = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(DATA, np.diag([-0.8, -0.9, 2.0, 1.0])).to_filename(path)  # LPS
    return read_volume(path)


def test_slices_are_written_centred_from_the_first_slice(volume, tmp_path):
    mean = RNG.random((2, 16, 16)).astype(np.float32)
    std = (RNG.random((2, 16, 16)) * 0.1).astype(np.float32)
    written = write_scanner_outputs(run_dataset(mean, std), volume, tmp_path / "out", 3)
    assert [path.name for path in written] == ["reconstruction.nii.gz", "std.nii.gz"]
    reconstruction, spread = (nib.load(path) for path in written)
    assert reconstruction.shape == (16, 16, 2)
    assert reconstruction.header["descrip"] == b"pyrodip reconstruction of scan.nii.gz"
    # LPS voxels are the shown slices transposed; the block sits at rows 4.., columns 2..
    np.testing.assert_allclose(np.asanyarray(reconstruction.dataobj),
                               volume.to_source_units(mean).transpose(2, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(reconstruction.affine[:3, 3], [-0.8 * 2, -0.9 * 4, 2.0 * 3])
    np.testing.assert_allclose(np.asanyarray(spread.dataobj),
                               volume.to_source_units(std, std=True).transpose(2, 1, 0),
                               rtol=1e-6)


def test_one_slice_without_the_slice_dimension(volume, tmp_path):
    mean = np.full((24, 20), 0.5, np.float32)
    written = write_scanner_outputs(run_dataset(mean, mean * 0), volume, tmp_path, 0)
    assert nib.load(written[0]).shape == (20, 24, 1)


@pytest.mark.parametrize(
    ("shape", "settings", "note"),
    [
        ((64, 64), {"task": "denoise", "observed": True, "size": None}, None),
        ((64, 64), {"task": "inpaint", "observed": True, "size": None}, None),
        ((64, 48), {"task": "ct", "observed": False, "size": None},
         "the ct task crops the slices to a square"),
        ((64, 64), {"task": "ct", "observed": True, "size": None},
         "an observed ct reconstruction lies on another grid than the input"),
        ((64, 64), {"task": "denoise", "observed": False, "size": 32},
         "--size resamples the slices"),
    ],
)
def test_scanner_output_note(shape, settings, note):
    assert scanner_output_note(shape, **{**settings, "task": TASKS[settings["task"]]}) == note
