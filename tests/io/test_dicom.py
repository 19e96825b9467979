"""pyrodip.io.dicom: DICOM slices scaled to [0, 1], DICOM series read as slices in position
order, and derived series written back."""

import copy
import functools

import numpy as np
import pydicom
import pytest
from conftest import write_dicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pyrodip.errors import InvalidInputError
from pyrodip.io import dicom
from pyrodip.io.images import load_image
from pyrodip.io.volumes import read_volume, write_volume

RNG = np.random.default_rng(0)


# --- one slice -------------------------------------------------------------------------------


def assert_image(image, shape):
    assert image.shape == shape
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


RAW = (np.arange(12 * 10).reshape(12, 10) * 8).astype(np.uint16)  # 0 .. 952


@pytest.mark.parametrize("slope", [2.0, -0.5])
def test_dicom_rescale_then_min_max(tmp_path, slope):
    write_dicom(tmp_path / "slice.dcm", RAW, RescaleSlope=slope, RescaleIntercept=-100)
    image = load_image(tmp_path / "slice.dcm")
    assert_image(image, (1, 12, 10))
    values = RAW * slope - 100
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_dicom_window_applies_to_rescaled_values(tmp_path):
    write_dicom(
        tmp_path / "slice.dcm",
        RAW,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=900,
        WindowWidth=1000,
    )
    image = load_image(tmp_path / "slice.dcm")
    values = RAW * 2.0 - 100  # -100 .. 1804; window covers 400 .. 1400
    expected = np.clip((values - 400) / 1000, 0, 1)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)
    assert image.min() == 0 and image.max() == 1


def test_dicom_monochrome1_is_inverted(tmp_path):
    write_dicom(tmp_path / "slice.dcm", RAW, PhotometricInterpretation="MONOCHROME1")
    image = load_image(tmp_path / "slice.dcm")
    np.testing.assert_allclose(image[0], 1 - RAW / RAW.max(), atol=1e-6)


def test_dicom_is_detected_without_suffix(tmp_path):
    write_dicom(tmp_path / "IM0001", RAW)
    np.testing.assert_allclose(load_image(tmp_path / "IM0001")[0], RAW / RAW.max(), atol=1e-6)


def test_dicom_without_pixel_data_raises(tmp_path):
    write_dicom(tmp_path / "empty.dcm", RAW, with_pixels=False)
    with pytest.raises(InvalidInputError, match="has no pixel data"):
        load_image(tmp_path / "empty.dcm")


@pytest.mark.parametrize("attributes, message", [
    ({"RescaleSlope": "nan"}, "has RescaleSlope 'nan', not a finite number"),
    ({"WindowCenter": "inf", "WindowWidth": "10"}, "has WindowCenter 'inf', not a finite"),
    ({"RescaleSlope": "1e308"}, "give values beyond floating point"),
    ({"Rows": 65535, "Columns": 65535}, "65535 x 65535 .*values .* more than pyrodip reads"),
])
@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom's, writing the lie
def test_dicom_headers_that_lie_are_refused(tmp_path, attributes, message):
    write_dicom(tmp_path / "lie.dcm", RAW, **attributes)
    with pytest.raises(InvalidInputError, match=message):
        load_image(tmp_path / "lie.dcm")
    with pytest.raises(InvalidInputError, match=message):
        read_volume(tmp_path / "lie.dcm")


# --- series ----------------------------------------------------------------------------------


ROW_COSINES, COLUMN_COSINES = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])


NORMAL = np.cross(ROW_COSINES, COLUMN_COSINES)  # (-1, 0, 0): a sagittal series


SPACING = (0.5, 0.7)  # between rows, between columns


CORNER = np.array([20.0, -100.0, 60.0])


NAMES = ["c.dcm", "IM_a", "d.dcm", "b.dcm"]


NUMBERS = [3, 1, 4, 2]


@functools.cache
def ct_small():
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def ct_slice(k, **attributes):
    """A copy of pydicom's CT_small.dcm as slice k of a sagittal series (pixels + 50 k)."""
    dataset = copy.deepcopy(ct_small())
    dataset.PixelData = (dataset.pixel_array + 50 * k).astype(np.int16).tobytes()
    dataset.ImageOrientationPatient = [*ROW_COSINES, *COLUMN_COSINES]
    dataset.ImagePositionPatient = list(CORNER + 5.0 * k * NORMAL)
    dataset.PixelSpacing = list(SPACING)
    dataset.InstanceNumber = NUMBERS[k]
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return dataset


def write_series(folder, **attributes):
    """Four slices in shuffled files, and what a folder may also hold beside a series."""
    folder.mkdir(exist_ok=True)
    for k, name in enumerate(NAMES):
        ct_slice(k, **attributes).save_as(folder / name)
    (folder / "notes.txt").write_text("not DICOM")
    (folder / ".hidden.dcm").write_bytes(b"junk")
    ct_slice(0, SeriesInstanceUID=generate_uid()).save_as(folder / "DICOMDIR")  # ignored
    return folder


def series_values():
    """The series' rescaled values in position order, (4, 128, 128)."""
    base = ct_small().pixel_array.astype(np.float64) - 1024  # RescaleIntercept -1024
    return np.stack([base + 50 * k for k in range(4)])


def read_back(folder):
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir())]


def min_max(values, over):
    values = np.asarray(values, dtype=np.float64)
    return (values - over.min()) / (over.max() - over.min())


def test_dicom_series_order_and_scaling(tmp_path):
    folder = write_series(tmp_path / "series")
    volume = read_volume(folder)
    values = series_values()
    assert volume.kind == "dicom" and volume.images.shape == (4, 128, 128)
    assert [path.name for path in volume.files] == NAMES  # by position, not name or number
    assert (volume.low, volume.high) == (values.min(), values.max())
    np.testing.assert_allclose(volume.images, min_max(values, values), atol=1e-6)
    assert all("PixelData" not in dataset for dataset in volume.datasets)
    for k in range(4):
        np.testing.assert_array_equal(load_image(folder, slice_index=k), volume.images[k][None])
    np.testing.assert_array_equal(load_image(folder), volume.images[2][None])
    with pytest.raises(InvalidInputError, match=r"DICOM slice 4 is out of range: .*\(0-3\)"):
        load_image(folder, slice_index=4)


def test_dicom_order_falls_back_to_instance_number_then_name(tmp_path):
    folder = write_series(tmp_path / "series")
    ct_slice(1, ImagePositionPatient=None).save_as(folder / NAMES[1])
    assert [p.name for p in read_volume(folder).files] == ["IM_a", "b.dcm", "c.dcm", "d.dcm"]
    for k, name in enumerate(NAMES):
        ct_slice(k, ImagePositionPatient=None, InstanceNumber=None).save_as(folder / name)
    assert [p.name for p in read_volume(folder).files] == sorted(NAMES)


def test_dicom_shared_window_and_monochrome1(tmp_path):
    folder = write_series(tmp_path / "series", WindowCenter=40, WindowWidth=400,
                          PhotometricInterpretation="MONOCHROME1")
    volume = read_volume(folder)
    assert (volume.low, volume.high) == (-160, 240) and volume.inverted
    expected = 1 - np.clip((series_values() + 160) / 400, 0, 1)
    np.testing.assert_allclose(volume.images, expected, atol=1e-6)
    np.testing.assert_allclose(volume.to_source_units(0.25), 140.0)
    # a window that differs between files is not shared: min-max over the series
    ct_slice(3, WindowCenter=50, WindowWidth=400).save_as(folder / NAMES[3])
    values = series_values()
    assert (read_volume(folder).low, read_volume(folder).high) == (values.min(), values.max())


def check_derived(written, sources, description, series_number):
    """The tags every written file must have, against its source dataset."""
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert written[0].SeriesInstanceUID != sources[0].SeriesInstanceUID
    uids = [ds.SOPInstanceUID for ds in written]
    assert len(set(uids)) == len(uids)
    assert not set(uids) & {ds.SOPInstanceUID for ds in sources}
    for ds, source in zip(written, sources, strict=True):
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription == description and ds.SeriesNumber == series_number
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID",
                        "SOPClassUID", "ImageOrientationPatient", "PixelSpacing",
                        "SliceThickness", "Modality"):
            assert ds[keyword].value == source[keyword].value, keyword
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16, 16, 15, 0)
        assert ds.SamplesPerPixel == 1 and ds.pixel_array.dtype == np.uint16


def stored_values(ds):
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_dicom_full_round_trip(tmp_path):
    volume = read_volume(write_series(tmp_path / "series"))
    folder = write_volume(volume, volume.images, tmp_path / "out", "mean", first_slice=0,
                          description="pyrodip mean")
    assert folder == tmp_path / "out" / "mean" and len(list(folder.iterdir())) == 4
    written = read_back(folder)
    check_derived(written, volume.datasets, "pyrodip mean", 1001)
    values = volume.to_source_units(volume.images)
    for k, ds in enumerate(written):
        assert ds.ImagePositionPatient == volume.datasets[k].ImagePositionPatient
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert float(ds.RescaleSlope) <= (volume.high - volume.low) / 65535 * (1 + 1e-9)
        error = np.abs(stored_values(ds) - values[k]).max()
        assert error <= float(ds.RescaleSlope) / 2 * (1 + 1e-6)
        assert "LargestImagePixelValue" not in ds
    back = read_volume(folder)  # no input window: the written range is the window
    assert [p.name for p in back.files] == [f"IM{k:04d}.dcm" for k in range(4)]
    np.testing.assert_allclose(back.images, volume.images, atol=2e-5)


def test_dicom_keeps_the_input_window_and_monochrome1(tmp_path):
    folder = write_series(tmp_path / "series", WindowCenter=40, WindowWidth=400,
                          PhotometricInterpretation="MONOCHROME1")
    volume = read_volume(folder)
    written = write_volume(volume, volume.images, tmp_path, "mean", first_slice=0)
    for ds in read_back(written):
        assert (ds.WindowCenter, ds.WindowWidth) == (40, 400)
        assert ds.PhotometricInterpretation == "MONOCHROME1"  # looks as the input does
    np.testing.assert_allclose(read_volume(written).images, volume.images, atol=1e-5)


def test_dicom_crop_moves_the_position(tmp_path):
    volume = read_volume(write_series(tmp_path / "series"))
    top, left = 10, 20
    block = volume.images[1:3, top : top + 64, left : left + 80]
    written = read_back(write_volume(volume, block, tmp_path, "crop", first_slice=1,
                                     crop=(top, left), description="crop"))
    check_derived(written, volume.datasets[1:3], "crop", 1001)
    values = volume.to_source_units(block)
    for k, ds in enumerate(written):
        assert (ds.Rows, ds.Columns, ds.InstanceNumber) == (64, 80, k + 2)
        # pixel (top, left) of the input: columns step along the row cosines, rows along the
        # column cosines
        corner = CORNER + 5.0 * (k + 1) * NORMAL
        expected = corner + left * SPACING[1] * ROW_COSINES + top * SPACING[0] * COLUMN_COSINES
        np.testing.assert_allclose(np.array(ds.ImagePositionPatient, float), expected)
        error = np.abs(stored_values(ds) - values[k]).max()
        assert error <= float(ds.RescaleSlope) / 2 * (1 + 1e-6)


def test_dicom_std_is_scaled_only(tmp_path):
    volume = read_volume(write_series(tmp_path / "series", PhotometricInterpretation="MONOCHROME1"))
    std = (RNG.random((4, 128, 128)) * 0.05).astype(np.float32)
    written = read_back(write_volume(volume, std, tmp_path, "std", first_slice=0, std=True,
                                     description="pyrodip std"))
    check_derived(written, volume.datasets, "pyrodip std", 2001)
    expected = std.astype(np.float64) * (volume.high - volume.low)  # no offset, no inversion
    top = expected.max()
    for k, ds in enumerate(written):
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert float(ds.WindowCenter) == pytest.approx(top / 2)
        assert float(ds.WindowWidth) == pytest.approx(top)
        error = np.abs(stored_values(ds) - expected[k]).max()
        assert error <= float(ds.RescaleSlope) / 2 * (1 + 1e-6)


def test_dicom_constant_image_is_valid(tmp_path):
    volume = read_volume(write_series(tmp_path / "series"))
    written = read_back(write_volume(volume, np.full((1, 128, 128), 0.5), tmp_path, "flat",
                                     first_slice=3))
    np.testing.assert_allclose(stored_values(written[0]), volume.to_source_units(0.5))
    assert float(written[0].WindowWidth) > 0


def test_empty_or_non_dicom_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="empty holds no DICOM image"):
        read_volume(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    np.save(tmp_path / "other" / "image.npy", np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="other holds no DICOM image"):
        read_volume(tmp_path / "other")


def test_folder_with_two_series(tmp_path):
    folder = write_series(tmp_path / "series")
    ct_slice(0, SeriesInstanceUID="1.2.3.4").save_as(folder / "other.dcm")
    with pytest.raises(InvalidInputError, match=r"holds 2 series \(.*1\.2\.3\.4.*\): put each "
                       "series in its own folder"):
        read_volume(folder)


def test_folder_with_two_sizes(tmp_path):
    folder = write_series(tmp_path / "series")
    small = ct_slice(3, Rows=64, Columns=64)
    small.PixelData = ct_small().pixel_array[:64, :64].tobytes()
    small.save_as(folder / NAMES[3])
    with pytest.raises(InvalidInputError, match=r"slices of different sizes \(128x128, 64x64\)"):
        read_volume(folder)


def test_file_without_pixels_or_in_colour(tmp_path):
    folder = write_series(tmp_path / "series")
    ct_slice(2, PixelData=None).save_as(folder / NAMES[2])
    with pytest.raises(InvalidInputError, match="d.dcm has no pixel data"):
        read_volume(folder)
    ct_slice(2, SamplesPerPixel=3).save_as(folder / NAMES[2])
    with pytest.raises(InvalidInputError, match=r"colour images \(d.dcm: SamplesPerPixel 3\)"):
        read_volume(folder)


def test_dicom_folder_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    volume = read_volume(write_series(tmp_path / "series"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "mean").mkdir()
    (out / "mean" / "old.dcm").write_text("the previous result")
    write = dicom._write_dicom_file
    calls = []

    def fail_on_second(dataset, path):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk went away")
        write(dataset, path)

    monkeypatch.setattr(dicom, "_write_dicom_file", fail_on_second)
    with pytest.raises(RuntimeError, match="disk went away"):
        write_volume(volume, volume.images, out, "mean", first_slice=0)
    assert [p.name for p in out.iterdir()] == ["mean"]  # no temporary folder left
    assert [p.name for p in (out / "mean").iterdir()] == ["old.dcm"]  # the old one untouched

    monkeypatch.setattr(dicom, "_write_dicom_file", write)
    write_volume(volume, volume.images, out, "mean", first_slice=0)
    assert [p.name for p in out.iterdir()] == ["mean"]
    assert sorted(p.name for p in (out / "mean").iterdir()) == [f"IM{k:04d}.dcm" for k in range(4)]
