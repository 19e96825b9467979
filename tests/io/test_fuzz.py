"""Every reader fuzzed: corrupted real files of each format (the cases of
``benchmarks/fuzz_readers.py``, drawn by hypothesis) are read with finite values in [0, 1] or
refused with pyrodip's one-line error; no pickle in a file is run; the CLI turns such files
into exit status 2, one line on stderr and nothing written."""

import importlib.util
import pickle
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrodip.infer.fitting
from pyrodip.cli import main
from pyrodip.errors import InvalidInputError
from pyrodip.io.images import load_image
from pyrodip.io.pixels import MAX_VALUES

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fuzz_readers.py"
_spec = importlib.util.spec_from_file_location("fuzz_readers", SCRIPT)
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

#: Cases per format in the default suite (the benchmark runs 10 000 and more).
EXAMPLES = 40


class HypothesisDraw:
    """A :class:`fuzz_readers.Draw` from hypothesis's data (long byte strings from a drawn
    seed: hypothesis draws at most a few KiB)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def raw(self, size: int) -> bytes:
        if size <= 64:
            return self.data.draw(st.binary(min_size=size, max_size=size))
        return np.random.default_rng(self.data.draw(st.integers(0, 2**32 - 1))).bytes(size)

    def choice(self, options):
        return self.data.draw(st.sampled_from(options))


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, list[Path]]:
    return fuzz.real_files(tmp_path_factory.mktemp("real"))


@pytest.mark.parametrize("kind", fuzz.FORMATS)
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_corrupted_file_is_read_or_refused_in_one_line(kind, real, data):
    fuzz.PICKLE_MARK.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        path = fuzz.make_case(kind, HypothesisDraw(data), real, Path(folder))
        assert fuzz.check(kind, path) in ("read", "refused")


def test_a_pickle_in_a_file_is_never_run(tmp_path):
    fuzz.PICKLE_MARK.unlink(missing_ok=True)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([fuzz._Executed()], dtype=object), allow_pickle=True)
    plain = tmp_path / "plain.npy"
    plain.write_bytes(pickle.dumps(fuzz._Executed()))
    for path in (objects, plain):
        with pytest.raises(InvalidInputError, match="cannot read NumPy file"):
            load_image(path)
    assert not fuzz.PICKLE_MARK.exists()


def test_bombs_and_huge_files_are_refused_before_they_are_decoded(tmp_path):
    draw = fuzz.RandomDraw(0)
    bomb = tmp_path / "bomb.nii.gz"  # 2^30 and more voxels of zeros in a few MiB
    bomb.write_bytes(fuzz.nifti_bomb(draw))
    with pytest.raises(InvalidInputError, match="more than pyrodip reads"):
        load_image(bomb)
    for name in ("huge.npy", "huge.nii"):  # sparse files of GiBs
        fuzz.huge_file(tmp_path / name, draw)
        with pytest.raises(InvalidInputError, match="more than pyrodip reads"):
            load_image(tmp_path / name)
    png = tmp_path / "bomb.png"
    png.write_bytes(fuzz.png_bomb(draw))
    with pytest.raises(InvalidInputError, match="cannot read image file|more than pyrodip"):
        load_image(png)
    assert MAX_VALUES < 2**30


def _bad_files(folder: Path, real: dict[str, list[Path]]) -> list[list[str]]:
    """Command lines that read a bad file of each format (and would fit nothing after)."""
    half = folder / "half.png"
    half.write_bytes(real["png"][0].read_bytes()[:200])
    nan = folder / "nan.npy"
    np.save(nan, np.full((40, 40), np.nan))
    slope = folder / "slope.dcm"
    slope.write_bytes(real["dicom"][0].read_bytes())
    fuzz.dicom_lie(slope, _Fixed(["RescaleSlope", "inf"]))
    bomb = folder / "bomb.nii.gz"
    bomb.write_bytes(fuzz.nifti_bomb(fuzz.RandomDraw(1)))
    sinogram = folder / "sinogram.npy"
    np.save(sinogram, np.full((40, 12), 1e300))
    config = folder / "config.toml"
    config.write_text('steps = "many"\nnoise_std = -1\n')
    study = folder / "study.toml"
    study.write_text('methods = "dip"\nimages = ["sample:ct"]\n')
    return [
        ["run", "--image", str(half)],
        ["run", "--image", str(nan)],
        ["run", "--image", str(slope)],
        ["run", "--image", str(bomb)],
        ["run", "--image", str(bomb), "--slices", "all"],
        ["run", "--task", "ct", "--observed", "--image", str(sinogram)],
        ["run", "--task", "inpaint", "--image", str(real["png"][0]), "--mask", str(half)],
        ["run", "--config", str(config), "--steps", "3"],
        ["compare", str(study)],
    ]


class _Fixed:
    """A draw that makes the listed choices in turn."""

    def __init__(self, choices: list) -> None:
        self.choices = list(choices)

    def choice(self, options):
        return self.choices.pop(0)


def assert_refused(argv: list[str], out: Path, capsys) -> None:
    """``pyrodip ARGV`` exits with status 2 and one line on stderr, and makes no ``out``."""
    with mock.patch.object(pyrodip.infer.fitting.Fitting, "run", side_effect=fuzz.FitStarted):
        code = main([*argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.startswith("pyrodip: error: "), (argv, err)
    assert not out.exists(), argv


def test_the_cli_refuses_each_bad_file_in_one_line_and_writes_nothing(real, tmp_path, capsys):
    for argv in _bad_files(tmp_path, real):
        assert_refused(argv, tmp_path / "out", capsys)


@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(fuzz.FORMATS), data=st.data())
def test_the_cli_refuses_a_sample_of_fuzzed_files(kind, data, real, tmp_path):
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        path = fuzz.make_case(kind, HypothesisDraw(data), real, Path(folder))
        if fuzz.check(kind, path) == "refused":
            fuzz.check_cli(kind, path, Path(folder) / "out")


def test_the_benchmark_counts_its_cases_by_format(capsys):
    assert fuzz.main(["--cases", str(len(fuzz.FORMATS)), "--cli", "--seed", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[-2].startswith(f"| all | {len(fuzz.FORMATS)} | ")
    assert [row.split(" | ")[1] for row in rows[2:-2]] == ["1"] * len(fuzz.FORMATS)
