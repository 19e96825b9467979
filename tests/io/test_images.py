"""pyrodip.io.images: loading by format, the errors of files no reader takes, and centre
cropping."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrodip.errors import InvalidInputError, MissingFileError, PyrodipError
from pyrodip.io.images import center_crop, load_image

GRAY = np.random.default_rng(0).random((12, 10))


def test_slice_index_is_ignored_for_other_formats(tmp_path):
    np.save(tmp_path / "image.npy", GRAY)
    image = load_image(tmp_path / "image.npy", slice_index=40)
    np.testing.assert_allclose(image, GRAY[None], atol=1e-6)


# --- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="image file not found: .*nothing.png"):
        load_image(tmp_path / "nothing.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nothing.png")


def test_folder_without_dicom_is_rejected(tmp_path):
    # a folder is read as a DICOM series (see tests/io/test_dicom.py)
    with pytest.raises(InvalidInputError, match="holds no DICOM image"):
        load_image(tmp_path)


@pytest.mark.parametrize("name", ["notes.txt", "garbage.dcm", "garbage.png"])
def test_unreadable_files_raise_one_line_errors(tmp_path, name):
    (tmp_path / name).write_text("this is not an image\n" * 3)
    with pytest.raises(PyrodipError) as caught:
        load_image(tmp_path / name)
    assert isinstance(caught.value, InvalidInputError)
    assert name in str(caught.value) and "\n" not in str(caught.value)


# --- center_crop -----------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    multiple=st.integers(1, 32),
    as_tensor=st.booleans(),
)
def test_center_crop_properties(height, width, multiple, as_tensor):
    image = np.arange(2 * height * width, dtype=np.float32).reshape(2, height, width)
    if as_tensor:
        image = torch.from_numpy(image)
    if height < multiple or width < multiple:
        with pytest.raises(InvalidInputError, match="smaller than the network's minimum side"):
            center_crop(image, multiple)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = center_crop(image, multiple)
    assert type(out) is type(image)
    new_height, new_width = out.shape[-2:]
    assert out.shape[0] == 2
    assert new_height % multiple == 0 and new_width % multiple == 0
    assert height - multiple < new_height <= height and width - multiple < new_width <= width
    # The values are row-major indices, so the first one tells where the crop starts.
    top, left = divmod(int(out[0, 0, 0]), width)
    assert abs(top - (height - new_height - top)) <= 1
    assert abs(left - (width - new_width - left)) <= 1
    np.testing.assert_array_equal(
        np.asarray(out), np.asarray(image)[:, top : top + new_height, left : left + new_width]
    )
    cropped = (new_height, new_width) != (height, width)
    assert len(caught) == (1 if cropped else 0)
    if cropped:
        assert issubclass(caught[0].category, UserWarning)
        message = str(caught[0].message)
        assert f"from {height}x{width} to {new_height}x{new_width}" in message
        assert f"multiples of {multiple}" in message


@pytest.mark.parametrize("multiple", [0, -4, 2.5, True])
def test_center_crop_rejects_bad_multiples(multiple):
    with pytest.raises(InvalidInputError, match="positive integer"):
        center_crop(np.zeros((1, 8, 8)), multiple)
