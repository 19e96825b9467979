"""Fuzz every reader: corrupt real files of each format pyrodip reads and check that each read
either gives what the reader promises (an image: finite float32 values in [0, 1]) or raises
pyrodip's one-line error (a :class:`pyrodip.errors.PyrodipError` whose message has no line
break); any other exception, or a value out of range, is a failure.

Formats (:data:`FORMATS`): PNG, JPEG, TIFF, NumPy ``.npy`` images, ``.npy`` sinograms, mask
images, single DICOM files (from pydicom's test files, compressed ones too), DICOM series
(folders), NIfTI (``.nii`` and ``.nii.gz``), TOML run configs and TOML study files. Each case
takes a real file of its format and corrupts it one way (:data:`MUTATIONS` and more):
truncation at a random offset, random bytes over the header or the pixel data, random bytes
inserted, an empty or a large random file, a header that lies about the size, the data type or
the scaling, a decompression bomb or a sparse file of GiBs, arrays holding NaN, infinities,
complex numbers, objects or pickles; configs and studies get values of the wrong type and
extreme numbers.

The draws come from a :class:`Draw`: :class:`RandomDraw` here, hypothesis in the test suite
(``tests/io/test_fuzz.py``), so that both run the same cases::

    OMP_NUM_THREADS=1 python benchmarks/fuzz_readers.py --cases 11000 --seed 0 --cli

prints the count of cases per format (read, refused) and every failure, and exits 1 on one.
``--cli`` also runs each refused case through ``pyrodip.cli.main`` in this process (fits
replaced by an error, so that nothing is fitted) and checks exit status 2, one line on stderr
and no ``--out`` folder made.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import pickle
import re
import shutil
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import imageio.v3 as iio
import nibabel
import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

import pyrodip.infer.fitting
from pyrodip.cli import main as pyrodip_main
from pyrodip.errors import PyrodipError
from pyrodip.io.images import load_image
from pyrodip.io.sinograms import load_sinogram
from pyrodip.io.volumes import read_volume
from pyrodip.physics.masks import parse_mask
from pyrodip.run.config import RunConfig, declared_settings
from pyrodip.studies.compare import Comparison

FORMATS = ("png", "jpeg", "tiff", "npy", "sinogram", "mask", "dicom", "series", "nifti",
           "config", "study")
#: Where a pickled array would leave its mark if a reader unpickled it.
PICKLE_MARK = Path(tempfile.gettempdir()) / "pyrodip-fuzz-pickle-ran"


class Draw(Protocol):
    """The random choices a case makes."""

    def integer(self, low: int, high: int) -> int: ...  # low..high, both included

    def raw(self, size: int) -> bytes: ...

    def choice(self, options: Sequence[Any]) -> Any: ...


class RandomDraw:
    """A :class:`Draw` from NumPy's generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high, endpoint=True))

    def raw(self, size: int) -> bytes:
        return self.rng.bytes(size)

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]


class _Executed:  # unpickling it would leave the mark
    def __reduce__(self):
        return (PICKLE_MARK.write_text, ("unpickled",))


# --- real files of each format ---------------------------------------------------------------


def real_files(folder: Path) -> dict[str, list[Path]]:
    """Valid files of each format in ``folder``, to corrupt (a DICOM series is a folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    gray = (rng.random((40, 48)) * 255).astype(np.uint8)
    rgb = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    files: dict[str, list[Path]] = {name: [] for name in FORMATS}

    def save(kind: str, name: str, write: Callable[[Path], object]) -> None:
        path = folder / name
        write(path)
        files[kind].append(path)

    save("png", "gray.png", lambda p: iio.imwrite(p, gray))
    save("png", "rgba.png", lambda p: iio.imwrite(p, np.dstack([rgb, gray])))
    save("png", "deep.png", lambda p: iio.imwrite(p, gray.astype(np.uint16) * 257))
    save("jpeg", "gray.jpg", lambda p: iio.imwrite(p, gray))
    save("jpeg", "rgb.jpg", lambda p: iio.imwrite(p, rgb))
    save("tiff", "deep.tif", lambda p: iio.imwrite(p, gray.astype(np.uint16) * 257))
    save("tiff", "float.tif", lambda p: iio.imwrite(p, gray.astype(np.float32) / 255))
    save("tiff", "zlib.tif",
         lambda p: iio.imwrite(p, rgb, plugin="tifffile", compression="zlib"))
    save("npy", "gray.npy", lambda p: np.save(p, gray))
    save("npy", "float.npy", lambda p: np.save(p, gray / 255.0))
    save("sinogram", "sinogram.npy", lambda p: np.save(p, rng.random((40, 12)) * 30))
    save("mask", "mask.png", lambda p: iio.imwrite(p, np.where(gray > 60, 255, 0).astype("u1")))
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                 "JPEG2000.dcm", "SC_rgb_rle.dcm"):
        source = get_testdata_file(name)
        save("dicom", name, lambda p, s=source: p.write_bytes(Path(s).read_bytes()))
    series = folder / "series"
    series.mkdir()
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for k in range(3):
        ct.ImagePositionPatient = [0.0, 0.0, float(k)]
        ct.InstanceNumber = k + 1
        ct.save_as(series / f"IM{k}.dcm")
    files["series"].append(series)
    volume = (rng.random((24, 20, 5)) * 1000).astype(np.int16)
    for name in ("volume.nii", "volume.nii.gz"):
        save("nifti", name, lambda p: nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), p))
    save("config", "config.toml", lambda p: p.write_text(
        'image = "sample:phantom"\nsteps = 20\nprior = "laplace:0.05"\nnoise_std = 0.1\n'))
    save("study", "study.toml", lambda p: p.write_text(
        'methods = ["dip", "mfvi"]\nimages = ["sample:ct"]\nseeds = [0, 1]\n'
        '[settings]\nsteps = 20\n[variant.small]\nmethod = "mfvi"\nprior_scale = 0.05\n'))
    return files


# --- mutations -------------------------------------------------------------------------------


def truncate(data: bytes, draw: Draw) -> bytes:
    return data[: draw.integer(0, max(len(data) - 1, 0))]


def overwrite_header(data: bytes, draw: Draw) -> bytes:
    return _overwrite(data, draw, 0, min(len(data), 400))


def overwrite_data(data: bytes, draw: Draw) -> bytes:
    return _overwrite(data, draw, len(data) // 2, len(data))


def _overwrite(data: bytes, draw: Draw, start: int, stop: int) -> bytes:
    out = bytearray(data)
    for _ in range(draw.integer(1, 8)):
        at = draw.integer(start, max(stop - 1, start))
        out[at : at + 4] = draw.raw(draw.integer(1, 4))
    return bytes(out)


def insert_bytes(data: bytes, draw: Draw) -> bytes:
    at = draw.integer(0, len(data))
    return data[:at] + draw.raw(draw.integer(1, 64)) + data[at:]


def empty(data: bytes, draw: Draw) -> bytes:
    return b""


def noise_file(data: bytes, draw: Draw) -> bytes:
    """Random bytes, up to 4 MiB, keeping the first (format-telling) bytes or not."""
    size = draw.choice((16, 4096, 1 << 22))
    kept = data[: draw.choice((0, 4, 132))]
    return kept + draw.raw(size)


#: Mutations of a file's bytes, by name.
MUTATIONS: dict[str, Callable[[bytes, Draw], bytes]] = {
    "truncate": truncate, "header": overwrite_header, "data": overwrite_data,
    "insert": insert_bytes, "empty": empty, "noise": noise_file,
}

EXTREMES = (0, -1, 1, 2, 255, 65535, 2**31 - 1, -(2**31), 2**32 + 1, 2**63 - 1, -(2**63))
FLOATS = (0.0, -0.0, 1e-320, -1.0, 1e308, -1e308, float("nan"), float("inf"), float("-inf"))


def number(draw: Draw) -> float | int:
    return draw.choice((draw.choice(EXTREMES), draw.choice(FLOATS), draw.integer(-5, 70000)))


def lying_array(draw: Draw) -> bytes:
    """An ``.npy`` file whose array is odd: shape, dtype, values, or a header that lies."""
    shape = draw.choice(((), (0,), (7,), (0, 5), (20, 24), (3, 20, 24), (20, 24, 5),
                         (2, 2, 8, 8), (1, 20, 24)))
    dtype = draw.choice(("u1", "u2", "i2", ">i4", "f2", "f4", ">f8", "c16", "?", "O", "U3",
                         "V4", "M8[s]", [("a", "f4"), ("b", "u1")]))
    size = int(np.prod(shape, dtype=np.int64))
    if dtype == "O":
        array = np.empty(shape, dtype=object)
        array.ravel()[:] = [_Executed()] * size
    else:
        array = np.frombuffer(draw.raw(size * np.dtype(dtype).itemsize), dtype=dtype).reshape(shape)
    if draw.integer(0, 1) and array.dtype.kind == "f" and size:
        array = array.copy()
        with np.errstate(over="ignore"):  # 1e308 in float16: infinity, as wanted
            array.flat[draw.integer(0, size - 1)] = draw.choice(FLOATS)
    buffer = _npy_bytes(array)
    lie = draw.choice(("none", "shape", "dtype", "fortran", "pickle"))
    if lie == "pickle":
        return pickle.dumps(np.array([_Executed()], dtype=object))
    header_end = buffer.index(b"\n") + 1
    header = buffer[:header_end].decode("latin1")
    if lie == "shape":
        header = re.sub(r"'shape': \([^)]*\)",
                        f"'shape': ({number(draw)}, {draw.choice(EXTREMES)})", header)
    elif lie == "dtype":
        header = re.sub(r"'descr': [^,]*,",
                        f"'descr': '{draw.choice(('<f8', '|O', '<c8', '>u2', '|V3', 'x'))}',",
                        header)
    elif lie == "fortran":
        header = header.replace("False", "True")
    return header.encode("latin1") + buffer[header_end:]


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def png_bomb(draw: Draw) -> bytes:
    """A PNG whose header claims a huge image over a little compressed data."""
    width, height = draw.choice((1 << 16, 1 << 20, 2**31 - 1)), draw.choice((1 << 14, 1 << 20))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (1 << 20), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(
        b"IEND", b"")


def tiff_lie(data: bytes, draw: Draw) -> bytes:
    """A TIFF whose first directory's width, length, bits or samples are rewritten."""
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    out = bytearray(data)
    tags = {256: "width", 257: "length", 258: "bits", 277: "samples", 278: "rows"}
    for k in range(count):
        at = offset + 2 + 12 * k
        tag, kind = struct.unpack(order + "HH", data[at : at + 4])
        if tag in tags and draw.integer(0, 1):
            value = draw.choice((0, 1, 3, 7, 64, 65535, 2**32 - 1))
            if kind == 3:  # SHORT
                out[at + 8 : at + 10] = struct.pack(order + "H", value & 0xFFFF)
            else:
                out[at + 8 : at + 12] = struct.pack(order + "I", value)
    return bytes(out)


DICOM_LIES = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
              "PixelRepresentation", "NumberOfFrames", "RescaleSlope", "RescaleIntercept",
              "WindowCenter", "WindowWidth", "PhotometricInterpretation", "TransferSyntaxUID",
              "ImagePositionPatient", "PlanarConfiguration")


def dicom_lie(path: Path, draw: Draw) -> None:
    """Rewrite one DICOM attribute of ``path`` with a lie."""
    dataset = pydicom.dcmread(path)
    keyword = draw.choice(DICOM_LIES)
    if keyword == "TransferSyntaxUID":
        dataset.file_meta.TransferSyntaxUID = draw.choice((
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.1.99", "1.2.3.4"))
    elif keyword == "PhotometricInterpretation":
        dataset.PhotometricInterpretation = draw.choice(("MONOCHROME1", "RGB", "YBR_FULL", "X"))
    elif keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
                     "ImagePositionPatient"):
        # a placeholder, replaced in the file's bytes: pydicom refuses to store such values
        setattr(dataset, keyword, [_PLACEHOLDER] * 3 if keyword == "ImagePositionPatient"
                else _PLACEHOLDER)
    else:
        setattr(dataset, keyword, draw.choice((0, 1, 3, 8, 12, 16, 32, 64, 65535)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset.save_as(path)
        except ValueError:  # pydicom writes no big-endian file: lie in its bytes instead
            path.write_bytes(overwrite_header(path.read_bytes(), draw))
            return
    value = draw.choice(("nan", "inf", "-inf", "1e308", "-1e308", "0", "1e-300", "x", ""))
    path.write_bytes(path.read_bytes().replace(_PLACEHOLDER.encode(), value.ljust(8).encode()))


_PLACEHOLDER = "9876543."


NIFTI_LIES = ("dim", "datatype", "bitpix", "vox_offset", "scl_slope", "scl_inter", "pixdim",
              "srow_x", "qform_code", "dim_count")


def nifti_lie(data: bytes, draw: Draw) -> bytes:
    """An uncompressed NIfTI-1 file with one header field rewritten."""
    out = bytearray(data)
    field = draw.choice(NIFTI_LIES)
    if field == "dim":
        axis = draw.integer(1, 4)
        out[40 + 2 * axis : 42 + 2 * axis] = struct.pack("<h", draw.choice(
            (0, -1, 1, 2, 1000, 32767)))
    elif field == "dim_count":
        out[40:42] = struct.pack("<h", draw.choice((0, 1, 5, 7, 8, -3)))
    elif field == "datatype":
        out[70:72] = struct.pack("<h", draw.choice((1, 2, 4, 16, 32, 64, 128, 256, 1792, 2304,
                                                   999)))
    elif field == "bitpix":
        out[72:74] = struct.pack("<h", draw.choice((0, 1, 8, 64, 128)))
    elif field == "vox_offset":
        out[108:112] = struct.pack("<f", draw.choice((0.0, 352.0, 1e9, -4.0, float("nan"))))
    elif field in ("scl_slope", "scl_inter"):
        at = 112 if field == "scl_slope" else 116
        out[at : at + 4] = struct.pack("<f", draw.choice(
            (0.0, float("nan"), float("inf"), 3e38, -3e38, 1e-38)))
    elif field == "pixdim":
        at = 80 + 4 * draw.integer(0, 2)
        out[at : at + 4] = struct.pack("<f", draw.choice((0.0, float("nan"), float("inf"), -1.0)))
    elif field == "srow_x":
        out[254:256] = struct.pack("<h", 1)  # sform_code: use the rows below
        out[280:284] = struct.pack("<f", draw.choice((float("nan"), float("inf"), 0.0)))
    else:
        out[252:254] = struct.pack("<h", draw.choice((1, 2, 5, -1)))
    return bytes(out)


def nifti_bomb(draw: Draw) -> bytes:
    """A ``.nii.gz`` whose 2^30 or more voxels of zeros (GiBs) are compressed to a few MiB:
    one compressed block of zeros repeated (gzip members), or a header that only claims them."""
    header = nibabel.Nifti1Header()
    header.set_data_dtype(np.uint8)
    side = draw.choice((1024, 4096, 32767))
    header.set_data_shape((side, side, 1024))
    head = gzip.compress(header.binaryblock + b"\0" * 4)
    if draw.integer(0, 1):
        return head + gzip.compress(b"\0" * (1 << 20))
    return head + gzip.compress(b"\0" * (1 << 24), compresslevel=9) * 64


def huge_file(path: Path, draw: Draw) -> None:
    """A valid ``.npy`` or ``.nii`` header over GiBs of zeros, written as a sparse file."""
    if path.suffix == ".npy":
        shape = draw.choice(((1 << 15, 1 << 15), (1 << 16, 1 << 15), (1 << 12, 1 << 12, 3)))
        with open(path, "wb") as file:
            np.lib.format.write_array_header_1_0(
                file, {"descr": "|u1", "fortran_order": False, "shape": shape})
    else:
        header = nibabel.Nifti1Header()
        header.set_data_dtype(np.uint8)
        shape = draw.choice(((1 << 14, 1 << 14, 4), (1 << 12, 1 << 12, 64)))
        header.set_data_shape(shape)
        path.write_bytes(header.binaryblock + b"\0" * 4)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size + int(np.prod(shape)))


# --- TOML --------------------------------------------------------------------------------------


def toml_value(draw: Draw, depth: int = 0) -> Any:
    """A TOML value of any type: extreme numbers, odd strings, arrays and tables."""
    kind = draw.choice(("int", "float", "bool", "str", "spec", "list", "table", "date")
                       if depth < 2 else ("int", "float", "str"))
    if kind == "int":
        return draw.choice(EXTREMES)
    if kind == "float":
        return draw.choice(FLOATS + (0.5, 1e-15, 1e15, 3.0))
    if kind == "bool":
        return bool(draw.integer(0, 1))
    if kind == "str":
        return draw.choice(("", "many", "nan", "-1", "1e999", "sample:ct", "cuda:99", "\u00e9",
                            "a\nb", "../../etc/passwd", "x" * 300, "normal:0", "normal:nan"))
    if kind == "spec":
        return draw.choice(("laplace:1e400", "normal:-1", "mixture::0.1:2", "partial:[",
                            "random:2", "strokes", "mfvi", "pytorch", "normal:1e-300"))
    if kind == "list":
        return [toml_value(draw, depth + 1) for _ in range(draw.integer(0, 3))]
    if kind == "table":
        return {f"k{i}": toml_value(draw, depth + 1) for i in range(draw.integer(0, 2))}
    return "DATE"  # written as a TOML date by :func:`to_toml`


def to_toml(value: Any) -> str:
    """A TOML literal (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "DATE":
        return "1979-05-27T07:32:00Z"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(
            value) == float("inf") else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(to_toml, value)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {to_toml(v)}" for k, v in value.items()) + "}"


def config_text(draw: Draw, keys: Sequence[str]) -> str:
    """A run config giving a few settings (or unknown keys) odd values."""
    lines = []
    for _ in range(draw.integer(1, 4)):
        key = draw.choice((*keys, "stepz", "kl_weight", "image"))
        value = toml_value(draw)
        if key == "plugins":  # imported: names that cannot exist
            value = ["pyrodip_fuzz_no_such_module"] if draw.integer(0, 1) else value
            if isinstance(value, str) or (isinstance(value, list) and any(
                    isinstance(v, str) and "no_such" not in v for v in value)):
                value = 3
        lines.append(f"{json.dumps(key)} = {to_toml(value)}")
    return "\n".join(dict.fromkeys(lines)) + "\n"


def study_text(draw: Draw, keys: Sequence[str]) -> str:
    """A study file with odd methods, images, seeds, settings and variants."""
    def field() -> Any:
        return draw.choice((["dip"], ["mfvi", "sgld"], [], "dip", [3], toml_value(draw)))

    head = {
        "methods": field(),
        "images": draw.choice((["sample:ct"], [], ["a.png", "b/a.png"], "sample:ct", [1.5])),
        "seeds": draw.choice(([0], [], [-1], [2**63 - 1], [0.5], ["x"], 7)),
    }
    lines = [f"{key} = {to_toml(value)}" for key, value in head.items() if draw.integer(0, 3)]
    if draw.integer(0, 5) == 0:
        lines.append(f"{draw.choice(('setting', 'device', 'runs'))} = 1")
    for table in ("[settings]", "[method.dip]", "[variant.v1]", '[variant."bad name"]'):
        if draw.integer(0, 1):
            lines.append(table)
            lines.extend(config_text(draw, keys).splitlines())
    return "\n".join(lines) + "\n"


# --- cases -------------------------------------------------------------------------------------


def make_case(kind: str, draw: Draw, files: dict[str, list[Path]], folder: Path) -> Path:
    """A corrupted file (or folder) of format ``kind`` in ``folder``, made from ``files``."""
    source = draw.choice(files[kind])
    if kind == "series":
        target = folder / "series"
        shutil.copytree(source, target)
        victim = draw.choice(sorted(target.iterdir()))
        if draw.integer(0, 1):
            dicom_lie(victim, draw)
        else:
            victim.write_bytes(draw.choice(list(MUTATIONS.values()))(victim.read_bytes(), draw))
        return target
    target = folder / source.name
    data = source.read_bytes()
    special = {"npy": lying_array, "sinogram": lying_array, "png": png_bomb, "mask": png_bomb,
               "nifti": nifti_bomb}
    choice = draw.integer(0, 2)
    if kind in ("config", "study") and choice:
        keys = sorted(declared_settings())
        target.write_text(config_text(draw, keys) if kind == "config" else study_text(draw, keys))
    elif kind == "tiff" and choice:
        target.write_bytes(tiff_lie(data, draw))
    elif kind == "dicom" and choice:
        target.write_bytes(data)
        dicom_lie(target, draw)
    elif kind == "nifti" and choice == 1:
        raw = gzip.decompress(data) if source.suffix == ".gz" else data
        lied = nifti_lie(raw, draw)
        target.write_bytes(gzip.compress(lied) if source.suffix == ".gz" else lied)
    elif kind in special and choice == 2:
        if kind in ("npy", "nifti") and draw.integer(0, 3) == 0:
            target = target.with_name("huge" + (".npy" if kind == "npy" else ".nii"))
            huge_file(target, draw)
        else:
            target.write_bytes(special[kind](draw))
    else:
        target.write_bytes(draw.choice(list(MUTATIONS.values()))(data, draw))
    return target


def read(kind: str, path: Path) -> Any:
    """Read ``path`` with the reader of ``kind``, as a run would."""
    if kind == "sinogram":
        return load_sinogram(path)
    if kind == "mask":
        return parse_mask(str(path), (40, 48))
    if kind == "config":
        return RunConfig.from_toml(path), RunConfig.from_toml(path, steps=3)
    if kind == "study":
        return Comparison.from_toml(path)
    if kind in ("series", "nifti"):
        return load_image(path), read_volume(path).images
    return load_image(path)


def check(kind: str, path: Path) -> str:
    """``"read"`` or ``"refused"``; raises AssertionError for anything else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = read(kind, path)
    except PyrodipError as error:
        assert "\n" not in str(error) and str(error), f"not one line: {str(error)!r}"
        return "refused"
    except Exception as error:
        raise AssertionError(f"{type(error).__name__}: {error}") from error
    assert not PICKLE_MARK.exists(), "a pickle in the file was run"
    images = [v for v in (value if isinstance(value, tuple) else (value,))
              if isinstance(v, np.ndarray | torch.Tensor)]
    for image in images:
        values = np.asarray(image, dtype=np.float64)
        assert np.isfinite(values).all(), "non-finite values"
        if kind not in ("sinogram", "mask"):
            assert image.dtype == np.float32 and values.min() >= 0 and values.max() <= 1, (
                f"values {values.min()}..{values.max()} ({image.dtype}) outside [0, 1]")
    return "read"


def command(kind: str, path: Path) -> list[str]:
    """The ``pyrodip`` command line that reads ``path`` as a file of format ``kind``."""
    if kind == "sinogram":
        return ["run", "--task", "ct", "--observed", "--image", str(path)]
    if kind == "mask":
        return ["run", "--task", "inpaint", "--image", "sample:phantom", "--mask", str(path)]
    if kind == "config":
        return ["run", "--config", str(path), "--steps", "3"]
    if kind == "study":
        return ["compare", str(path)]
    return ["run", "--image", str(path)]


class FitStarted(Exception):
    """Raised instead of fitting (see :func:`check_cli`): the input passed every check."""


def check_cli(kind: str, path: Path, out: Path) -> None:
    """Run the command that reads the refused file ``path`` in this process (fits replaced by
    :class:`FitStarted`); AssertionError unless it exits with status 2, one line on stderr
    and no ``out`` folder."""
    err = io.StringIO()
    with (mock.patch.object(pyrodip.infer.fitting.Fitting, "run", side_effect=FitStarted),
          contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO())):
        try:
            code = pyrodip_main([*command(kind, path), "--out", str(out), "--quiet"])
        except (FitStarted, SystemExit) as stop:
            code = getattr(stop, "code", "fit")
    text = err.getvalue()
    assert code == 2, f"exit status {code}: {text!r}"
    assert text.count("\n") == 1 and text.startswith("pyrodip: error: "), repr(text)
    assert not out.exists(), f"{out} was made"


def run_cases(cases: int, seed: int, cli: bool = False) -> tuple[Counter, list[str]]:
    """Run ``cases`` cases, cycling through the formats, the refused ones also through the
    command line with ``cli``; the counts and the failures."""
    counts: Counter = Counter()
    failures: list[str] = []
    PICKLE_MARK.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = real_files(Path(tmp) / "real")
        for case in range(cases):
            kind = FORMATS[case % len(FORMATS)]
            folder = Path(tmp) / f"case{case}"
            folder.mkdir()
            draw = RandomDraw(seed * 1_000_003 + case)
            path = make_case(kind, draw, files, folder)
            try:
                outcome = check(kind, path)
                if cli and outcome == "refused":
                    check_cli(kind, path, folder / "out")
                    counts[kind, "cli"] += 1
                counts[kind, outcome] += 1
            except AssertionError as error:
                counts[kind, "failed"] += 1
                failures.append(f"case {case} ({kind}, seed {seed}): {error}")
            shutil.rmtree(folder)
    return counts, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", action="store_true",
                        help="also run each refused case through pyrodip's command line")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts, failures = run_cases(args.cases, args.seed, args.cli)
    outcomes = ("read", "refused", "cli", "failed")
    print("| format | cases | read | refused | of them through the CLI | failed |\n"
          "|---|---|---|---|---|---|")
    for kind in FORMATS:
        row = [counts[kind, outcome] for outcome in outcomes]
        print(f"| {kind} | {row[0] + row[1] + row[3]} | " + " | ".join(map(str, row)) + " |")
    total = [sum(counts[k, o] for k in FORMATS) for o in outcomes]
    print(f"| all | {total[0] + total[1] + total[3]} | " + " | ".join(map(str, total)) + " |")
    print(f"{args.cases} cases in {time.perf_counter() - start:.0f} s")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
