"""pyrodip.io.volumes: the Volume type (its slices, checked), which paths are volumes, and
reading and writing dispatched by format (the formats' own rules: test_nifti.py, test_dicom.py)."""

import shutil

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from pyrodip.errors import InvalidInputError, MissingFileError
from pyrodip.io.images import load_image
from pyrodip.io.volumes import is_volume_source, read_volume, write_volume

VOLUME = np.random.default_rng(0).integers(-1000, 3000, (6, 5, 7), dtype=np.int16)  # (X, Y, Z)


def write_nifti(path, array=VOLUME):
    nib.Nifti1Image(array, np.eye(4)).to_filename(path)
    return path


def test_nifti_numpy_integer_slice_index(tmp_path):
    path = write_nifti(tmp_path / "volume.nii", VOLUME)
    np.testing.assert_array_equal(load_image(path, np.int64(2)), load_image(path, 2))


@pytest.mark.parametrize("slice_index", [7, 40, -1])
def test_nifti_slice_out_of_range(tmp_path, slice_index):
    path = write_nifti(tmp_path / "volume.nii.gz", VOLUME)
    message = (
        rf"NIfTI slice {slice_index} is out of range: the volume has 7 slices \(0-6\); "
        "choose `slice_index` in that range"
    )
    with pytest.raises(InvalidInputError, match=message):
        load_image(path, slice_index=slice_index)


@pytest.mark.parametrize("slice_index", [1.5, "2", True])
def test_nifti_slice_must_be_an_integer(tmp_path, slice_index):
    path = write_nifti(tmp_path / "volume.nii", VOLUME)
    with pytest.raises(InvalidInputError, match="NIfTI slice must be an integer"):
        load_image(path, slice_index=slice_index)


def test_dicom_single_file_is_a_series_of_one():
    volume = read_volume(get_testdata_file("CT_small.dcm"))
    assert volume.images.shape == (1, 128, 128)
    np.testing.assert_allclose(volume.images, load_image("sample:ct"), atol=1e-6)


def test_missing_path_and_other_files(tmp_path):
    with pytest.raises(MissingFileError, match="volume not found"):
        read_volume(tmp_path / "nothing.nii.gz")
    np.save(tmp_path / "image.npy", np.zeros((4, 4)))
    for image in (tmp_path / "image.npy", "sample:ct"):
        with pytest.raises(InvalidInputError, match="is a single image, not a volume: `slices`"):
            read_volume(image)


def test_write_checks_the_block(tmp_path):
    volume = read_volume(write_nifti(tmp_path / "volume.nii"))
    with pytest.raises(InvalidInputError, match="cannot write 2 slices from slice 6"):
        write_volume(volume, volume.images[:2], tmp_path, "x", first_slice=6)
    with pytest.raises(InvalidInputError, match="crop at .* does not fit"):
        write_volume(volume, volume.images[:, 2:], tmp_path, "x", first_slice=0, crop=(3, 0))
    with pytest.raises(InvalidInputError, match="plain file name"):
        write_volume(volume, volume.images, tmp_path, "a/b", first_slice=0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan.nii", True),
        ("scan.NII.GZ", True),
        ("slice.dcm", True),
        ("image.png", False),
        ("image.tif", False),
        ("array.npy", False),
        ("sample:ct", False),
    ],
)
def test_is_volume_source(tmp_path, name, expected):
    path = name if name.startswith("sample:") else tmp_path / name
    assert is_volume_source(path) is expected


def test_is_volume_source_on_disk(tmp_path):
    assert is_volume_source(tmp_path)  # a folder: a DICOM series
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "IM0001")  # DICOM without a suffix
    (tmp_path / "notes").write_text("not DICOM")
    assert is_volume_source(tmp_path / "IM0001") and not is_volume_source(tmp_path / "notes")
