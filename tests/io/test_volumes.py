"""pyrodip.io.volumes: NIfTI volumes and DICOM series read as slices and written back."""

import copy
import functools

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pyrodip.errors import InvalidInputError, MissingFileError
from pyrodip.io import volumes
from pyrodip.io.images import load_image
from pyrodip.io.volumes import is_volume_source, read_volume, write_volume

RNG = np.random.default_rng(0)

# --- NIfTI -----------------------------------------------------------------------------------

DATA = RNG.integers(-1000, 3000, (20, 24, 6), dtype=np.int16)  # (X, Y, Z)
ORIGIN = (12.5, -30.0, 41.0)
AFFINES = {  # voxel axes (0.8, 0.9, 2.0 mm) and how a slice is shown (see images.py)
    "RAS": (np.diag([0.8, 0.9, 2.0, 1.0]), lambda xy: xy.T[::-1, ::-1]),
    "LAS": (np.diag([-0.8, 0.9, 2.0, 1.0]), lambda xy: xy.T[::-1, :]),
    "LPS": (np.diag([-0.8, -0.9, 2.0, 1.0]), lambda xy: xy.T),
}


def write_nifti(path, data=DATA, orientation="LPS"):
    affine = AFFINES[orientation][0].copy()
    affine[:3, 3] = ORIGIN
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)  # scanner: qform and sform both set
    image.to_filename(path)
    return path


def min_max(values, over):
    values = np.asarray(values, dtype=np.float64)
    return (values - over.min()) / (over.max() - over.min())


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_nifti_slices_are_oriented_and_scaled_over_the_volume(tmp_path, orientation):
    path = write_nifti(tmp_path / "volume.nii.gz", orientation=orientation)
    volume = read_volume(path)
    assert volume.kind == "nifti" and volume.slice_count == 6
    assert volume.images.shape == (6, 24, 20) and volume.images.dtype == np.float32
    assert (volume.low, volume.high) == (DATA.min(), DATA.max())
    view = AFFINES[orientation][1]
    for k in range(6):
        np.testing.assert_allclose(volume.images[k], min_max(view(DATA[:, :, k]), DATA), atol=1e-6)
        np.testing.assert_array_equal(load_image(path, slice_index=k), volume.images[k][None])
    np.testing.assert_array_equal(load_image(path), volume.images[3][None])  # the middle one
    np.testing.assert_allclose(volume.to_source_units(volume.images[2]), view(DATA[:, :, 2]),
                               atol=1e-3)


def test_nifti_scaling_rules(tmp_path):
    unsigned = RNG.integers(0, 200, (8, 8, 3), dtype=np.uint8)
    volume = read_volume(write_nifti(tmp_path / "u8.nii", unsigned))
    assert (volume.low, volume.high) == (0, 255)
    np.testing.assert_allclose(volume.images, unsigned.T / 255, atol=1e-7)

    unit = (RNG.random((8, 8, 3)) * 0.5).astype(np.float32)
    volume = read_volume(write_nifti(tmp_path / "unit.nii", unit))
    assert (volume.low, volume.high) == (0, 1)
    np.testing.assert_allclose(volume.images, unit.T, atol=1e-7)

    volume = read_volume(write_nifti(tmp_path / "flat.nii", np.full((8, 8, 3), 7, np.int16)))
    assert (volume.low, volume.high) == (7, 8) and not volume.images.any()

    scaled = nib.Nifti1Image(unsigned, np.eye(4))
    scaled.header.set_slope_inter(2.0, -10.0)  # uint8 on disk, but scaled: min-max
    scaled.to_filename(tmp_path / "scaled.nii")
    volume = read_volume(tmp_path / "scaled.nii")
    assert (volume.low, volume.high) == (int(unsigned.min()) * 2 - 10, int(unsigned.max()) * 2 - 10)


def test_nifti_nan_is_refused(tmp_path):
    data = RNG.random((8, 8, 3)) * 5
    data[1, 2, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite voxels: replace them"):
        read_volume(write_nifti(tmp_path / "nan.nii", data))


def test_nifti_4d_needs_a_volume_index(tmp_path):
    series = np.stack([DATA, DATA // 2, -DATA], axis=-1)  # (X, Y, Z, T)
    path = write_nifti(tmp_path / "series.nii.gz", series)
    message = (
        r"NIfTI file .*series.nii.gz holds 3 volumes \(4-D\): choose one with `volume_index=K` "
        r"\(0-2\)"
    )
    with pytest.raises(InvalidInputError, match=message):
        read_volume(path)
    with pytest.raises(InvalidInputError, match=r"volume 3 is out of range: .* \(0-2\)"):
        read_volume(path, volume_index=3)
    volume = read_volume(path, volume_index=2)
    assert volume.volume_index == 2 and (volume.low, volume.high) == (-DATA.max(), -DATA.min())
    np.testing.assert_allclose(volume.images[1], min_max(-DATA[:, :, 1].T, -DATA), atol=1e-6)
    # a single volume stored as 4-D needs no index
    single = read_volume(write_nifti(tmp_path / "one.nii", DATA[..., None]))
    np.testing.assert_array_equal(single.images, read_volume(write_nifti(
        tmp_path / "three.nii", DATA)).images)


def test_nifti_2d_and_4d_write_back(tmp_path):
    plane = read_volume(write_nifti(tmp_path / "plane.nii", DATA[:, :, 0]))
    assert plane.images.shape == (1, 24, 20)
    written = write_volume(plane, plane.images, tmp_path, "plane_mean", first_slice=0)
    np.testing.assert_allclose(read_volume(written).images, plane.images, atol=1e-6)

    series = np.stack([DATA, -DATA], axis=-1)
    volume = read_volume(write_nifti(tmp_path / "series.nii", series), volume_index=1)
    written = write_volume(volume, volume.images, tmp_path, "series_mean", first_slice=0)
    assert nib.load(written).shape == DATA.shape  # the chosen volume, 3-D
    np.testing.assert_allclose(read_volume(written).images, volume.images, atol=1e-6)


def test_nifti_full_round_trip_keeps_the_header(tmp_path):
    path = write_nifti(tmp_path / "volume.nii.gz", orientation="RAS")
    volume = read_volume(path)
    written = write_volume(volume, volume.images, tmp_path / "out", "mean", first_slice=0,
                           description="pyrodip mean")
    assert written == tmp_path / "out" / "mean.nii.gz"
    source, result = nib.load(path), nib.load(written)
    np.testing.assert_array_equal(result.affine, source.affine)
    assert result.shape == DATA.shape and result.get_data_dtype() == np.float32
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units"):
        np.testing.assert_array_equal(result.header[key], source.header[key])
    assert result.header["descrip"] == b"pyrodip mean"
    assert result.dataobj.slope == 1 and result.dataobj.inter == 0
    np.testing.assert_allclose(np.asanyarray(result.dataobj), DATA, atol=1e-3)
    back = read_volume(written)
    assert (back.low, back.high) == (volume.low, volume.high)
    np.testing.assert_allclose(back.images, volume.images, atol=1e-6)


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_nifti_block_sits_where_it_came_from(tmp_path, orientation):
    """Each output voxel holds the input value at the same world coordinate."""
    path = write_nifti(tmp_path / "volume.nii", orientation=orientation)
    volume = read_volume(path)
    top, left = 3, 2
    block = volume.images[1:4, top : top + 16, left : left + 15]
    written = write_volume(volume, block, tmp_path, "block", first_slice=1, crop=(top, left))
    result = nib.load(written)
    assert result.shape == (15, 16, 3)
    for key in ("qform_code", "sform_code"):
        assert result.header[key] == nib.load(path).header[key] > 0
    np.testing.assert_allclose(result.header.get_qform(), result.header.get_sform(), atol=1e-5)
    voxels = np.stack(np.meshgrid(*map(np.arange, result.shape), indexing="ij"), -1)
    world = nib.affines.apply_affine(result.affine, voxels)
    source = np.rint(nib.affines.apply_affine(np.linalg.inv(nib.load(path).affine), world))
    i, j, k = source.astype(int).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(np.asanyarray(result.dataobj), DATA[i, j, k], atol=1e-3)
    assert tuple(source[0, 0, 0]) != (0, 0, 0)  # the affine did move


def test_nifti_std_is_scaled_only(tmp_path):
    volume = read_volume(write_nifti(tmp_path / "volume.nii"))
    std = (RNG.random((2, 24, 20)) * 0.1).astype(np.float32)
    written = write_volume(volume, std, tmp_path, "std", first_slice=4, std=True)
    result = nib.load(written)
    expected = std.transpose(2, 1, 0) * (volume.high - volume.low)  # LPS: plain transpose
    np.testing.assert_allclose(np.asanyarray(result.dataobj), expected, rtol=1e-6)
    assert result.header["cal_min"] == result.header["cal_max"] == 0


# --- DICOM -----------------------------------------------------------------------------------

ROW_COSINES, COLUMN_COSINES = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
NORMAL = np.cross(ROW_COSINES, COLUMN_COSINES)  # (-1, 0, 0): a sagittal series
SPACING = (0.5, 0.7)  # between rows, between columns
CORNER = np.array([20.0, -100.0, 60.0])
# slice k (in position order) is in file NAMES[k] with InstanceNumber NUMBERS[k]
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


def test_dicom_single_file_is_a_series_of_one():
    volume = read_volume(get_testdata_file("CT_small.dcm"))
    assert volume.images.shape == (1, 128, 128)
    np.testing.assert_allclose(volume.images, load_image("sample:ct"), atol=1e-6)


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


# --- bad inputs ------------------------------------------------------------------------------


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


def test_missing_path_and_other_files(tmp_path):
    with pytest.raises(MissingFileError, match="volume not found"):
        read_volume(tmp_path / "nothing.nii.gz")
    np.save(tmp_path / "image.npy", np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="is not a volume"):
        read_volume(tmp_path / "image.npy")


def test_write_checks_the_block(tmp_path):
    volume = read_volume(write_nifti(tmp_path / "volume.nii"))
    with pytest.raises(InvalidInputError, match="cannot write 2 slices from slice 5"):
        write_volume(volume, volume.images[:2], tmp_path, "x", first_slice=5)
    with pytest.raises(InvalidInputError, match="crop at .* does not fit"):
        write_volume(volume, volume.images[:, 2:], tmp_path, "x", first_slice=0, crop=(3, 0))
    with pytest.raises(InvalidInputError, match="plain file name"):
        write_volume(volume, volume.images, tmp_path, "a/b", first_slice=0)


def test_dicom_folder_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    volume = read_volume(write_series(tmp_path / "series"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "mean").mkdir()
    (out / "mean" / "old.dcm").write_text("the previous result")
    write = volumes._write_dicom_file
    calls = []

    def fail_on_second(dataset, path):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk went away")
        write(dataset, path)

    monkeypatch.setattr(volumes, "_write_dicom_file", fail_on_second)
    with pytest.raises(RuntimeError, match="disk went away"):
        write_volume(volume, volume.images, out, "mean", first_slice=0)
    assert [p.name for p in out.iterdir()] == ["mean"]  # no temporary folder left
    assert [p.name for p in (out / "mean").iterdir()] == ["old.dcm"]  # the old one untouched

    monkeypatch.setattr(volumes, "_write_dicom_file", write)
    write_volume(volume, volume.images, out, "mean", first_slice=0)
    assert [p.name for p in out.iterdir()] == ["mean"]
    assert sorted(p.name for p in (out / "mean").iterdir()) == [f"IM{k:04d}.dcm" for k in range(4)]


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
    ct_slice(0).save_as(tmp_path / "IM0001")  # DICOM without a suffix
    (tmp_path / "notes").write_text("not DICOM")
    assert is_volume_source(tmp_path / "IM0001") and not is_volume_source(tmp_path / "notes")
