"""Bad input is refused before any fit, with one line on stderr and exit status 2
(the cases docs/reliability.md lists), and random option values give a fit or a clean error."""

import tempfile
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from conftest import write_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.io import imsave

import pyrodip.infer.fitting
from pyrodip import RunConfig
from pyrodip.bayes.guides import GUIDES
from pyrodip.bayes.networks import PRESETS
from pyrodip.bayes.priors import PRIORS
from pyrodip.cli import main
from pyrodip.errors import InvalidInputError, MissingFileError
from pyrodip.infer.elbo import ENGINES
from pyrodip.infer.methods import METHODS
from pyrodip.infer.optimizers import OPTIMIZERS
from pyrodip.physics.noise import NOISE_MODELS
from pyrodip.physics.tasks import TASKS
from pyrodip.run.config import NOISE_LEVELS
from pyrodip.run.observe import prepare_observation


def make_files(folder: Path) -> dict[str, str]:
    """Tiny bad (and good) input files in ``folder``, by name."""
    rng = np.random.default_rng(0)
    gray = (rng.random((64, 64)) * 255).astype(np.uint8)
    files = {"dir": folder}
    files["png"] = folder / "ok.png"
    imsave(files["png"], gray)
    data = files["png"].read_bytes()
    files["half_png"] = folder / "half.png"
    files["half_png"].write_bytes(data[: len(data) // 2])
    files["text_png"] = folder / "text.png"
    files["text_png"].write_text("not an image\n")
    files["png8"] = folder / "tiny8.png"
    imsave(files["png8"], gray[:8, :8])
    files["png48"] = folder / "tiny48.png"
    imsave(files["png48"], gray[:48, :48])
    for name, array in {
        "npy4d": np.zeros((2, 2, 64, 64)),
        "npy5ch": np.zeros((5, 64, 64)),
        "nan_npy": np.where(rng.random((64, 64)) < 0.01, np.nan, 0.5),
        "inf_npy": np.where(rng.random((64, 64)) < 0.01, np.inf, 0.5),
    }.items():
        files[name] = folder / f"{name}.npy"
        np.save(files[name], array)
    files["nii"] = folder / "volume.nii.gz"
    volume = rng.random((64, 64, 3)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), files["nii"])
    files["dcm"] = folder / "report.dcm"
    write_dicom(files["dcm"], np.zeros((4, 4), np.uint16), with_pixels=False)
    files["mask32"] = folder / "mask32.png"
    imsave(files["mask32"], np.full((32, 32), 255, np.uint8), check_contrast=False)
    files["black_mask"] = folder / "black.png"
    imsave(files["black_mask"], np.zeros((64, 64), np.uint8), check_contrast=False)
    for name, text in {
        "syntax_toml": "steps = = 3\n",
        "key_toml": "stepz = 3\n",
        "type_toml": "prior = 3\n",
        "steps_toml": 'steps = "many"\n',
    }.items():
        files[name] = folder / f"{name}.toml"
        files[name].write_text(text)
    files["a_file"] = folder / "a_file.txt"
    files["a_file"].write_text("x")
    files["done"] = folder / "done"
    files["done"].mkdir()
    (files["done"] / "result.nc").write_bytes(b"an earlier result")
    return {name: str(path) for name, path in files.items()}


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

#: (what, argv after the command, a fragment of the message); {name} is a file of make_files.
#: Without --out, the case runs with --out set to an empty folder's path.
CASES = [
    ("missing file", ["run", "--image", "{dir}/missing.png"],
     "image file not found: {dir}/missing.png"),
    ("truncated PNG", ["run", "--image", "{half_png}"], "(image file is truncated)"),
    ("text file named .png", ["run", "--image", "{text_png}"],
     "cannot read image file {text_png}"),
    ("DICOM without pixel data", ["run", "--image", "{dcm}"], "has no pixel data"),
    ("NIfTI slice out of range", ["run", "--image", "{nii}", "--slice", "5"],
     "NIfTI slice 5 is out of range: the volume has 3 slices (0-2)"),
    ("image below the small net's side", ["run", "--image", "{png8}"],
     "the image is 8x8 but the small network needs sides of at least 32 pixels"),
    ("image below the paper net's side", ["run", "--image", "{png48}", "--net", "paper"],
     "needs sides of at least 64 pixels: use a larger image or --size 64 or --net small"),
    ("--size below the net's side", ["run", "--image", "{png}", "--size", "8"],
     "the image is 8x8 but the small network"),
    ("4-D array", ["run", "--image", "{npy4d}"], "cannot use an image of shape (2, 2, 64, 64)"),
    ("renders without averaging", ["run", "--image", "{png}", "--average", "0"],
     "readout 'renders' averages the last steps: give --average > 0, or --readout final"),
    ("--average above one", ["run", "--average", "1.5"], "average must be a number in [0, 1]"),
    ("5 channels", ["run", "--image", "{npy5ch}"], "cannot use an image of shape (5, 64, 64)"),
    ("NaN pixels", ["run", "--image", "{nan_npy}"], "contains NaN or infinite pixels"),
    ("Inf pixels", ["run", "--image", "{inf_npy}"], "contains NaN or infinite pixels"),
    ("mask of another shape", ["run", "--image", "{png}", "--task", "inpaint", "--mask",
                               "{mask32}"], "is 32x32 but the image is 64x64"),
    ("mask with no known pixel", ["run", "--image", "{png}", "--task", "inpaint", "--mask",
                                  "{black_mask}"], "has no known pixel (all black)"),
    ("random mask hiding everything", ["run", "--task", "inpaint", "--mask", "random:1"],
     "missing fraction must be a number in [0, 1)"),
    ("noise std 0", ["run", "--noise-std", "0"], "noise_std must be a positive number, got 0.0"),
    ("noise std < 0", ["run", "--noise-std", "-1"], "noise_std must be a positive number"),
    ("noise std NaN", ["run", "--noise-std", "nan"], "noise_std must be a positive number"),
    ("lr 0", ["run", "--lr", "0"], "lr must be a positive number, got 0.0"),
    ("lr NaN", ["run", "--lr", "nan"], "lr must be a positive number, got nan"),
    ("lr inf", ["run", "--lr", "inf"], "lr must be a positive number, got inf"),
    ("lr beyond float32", ["run", "--lr", "1e20"], "lr must be between 1e-15 and 1e+15"),
    ("prior scale 0", ["run", "--prior-scale", "0"], "prior_scale must be a positive number"),
    ("prior scale < 0 in the spec", ["run", "--prior", "normal:-1"],
     "prior_scale must be a positive number, got -1.0"),
    ("prior scale NaN", ["run", "--prior", "laplace:nan"], "prior_scale must be a positive"),
    ("temperature < 0", ["run", "--temperature", "-1"], "temperature must be a number >= 0"),
    ("temperature NaN", ["run", "--temperature", "nan"], "temperature must be a number >= 0"),
    ("steps 0", ["run", "--steps", "0"], "steps must be a positive integer, got 0"),
    ("steps < 0", ["run", "--steps", "-5"], "steps must be a positive integer, got -5"),
    ("samples 0", ["run", "--samples", "0"], "samples must be a positive integer, got 0"),
    ("steps not a number", ["run", "--steps", "many"], "invalid int value: 'many'"),
    ("unknown option", ["run", "--stepz", "3"], "unrecognized arguments: --stepz 3"),
    ("unknown task", ["run", "--task", "deblur"],
     "unknown task 'deblur': choose one of denoise, superres, inpaint, ct"),
    ("unknown method", ["run", "--method", "magic"],
     "unknown method 'magic': choose one of mfvi, dip, sgld, mcdropout"),
    ("unknown prior", ["run", "--prior", "cauchy"], "unknown prior 'cauchy': choose one of normal"),
    ("unknown guide", ["run", "--guide", "full"], "unknown guide 'full': choose one of meanfield"),
    ("unknown noise model", ["run", "--noise", "salt"],
     "unknown noise 'salt': choose one of gaussian, speckle, poisson"),
    ("unknown noise level", ["run", "--noise-level", "high"],
     "unknown noise_level 'high': choose one of known, learned, heteroscedastic"),
    ("unknown net", ["run", "--net", "huge"], "unknown net 'huge': choose one of small, paper"),
    ("super-resolution factor 3", ["run", "--task", "superres", "--factor", "3"],
     "super-resolution factor must be one of 2, 4, 8, got 3"),
    ("--device cuda without CUDA", ["run", "--device", "cuda"],
     "device 'cuda' requested but CUDA is not available: use --device cpu"),
    ("unknown device", ["run", "--device", "tpu"], "unknown device 'tpu': use cpu, cuda or cuda:N"),
    ("seed < 0", ["run", "--seed", "-1"], "seed must be an integer from 0 to 4294967295"),
    ("--out is a file", ["run", "--out", "{a_file}"], "is a file: choose a folder with --out"),
    ("--out not writable", ["run", "--out", "{a_file}/run"],
     "output folder {a_file}/run is not writable"),
    ("--out holds a result", ["run", "--out", "{done}"],
     "{done} already holds a result (result.nc): choose another --out or pass --overwrite"),
    ("TOML syntax error", ["run", "--config", "{syntax_toml}"],
     "config file {syntax_toml} is not valid TOML: Invalid value (at line 1, column 9)"),
    ("TOML unknown key", ["run", "--config", "{key_toml}"],
     "unknown key 'stepz' in config file {key_toml} (did you mean 'steps'?)"),
    ("TOML value of the wrong type", ["run", "--config", "{type_toml}"],
     "config file {type_toml}: prior must be a string, got 3"),
    ("TOML value of the wrong type, overridden", ["run", "--config", "{steps_toml}", "--steps",
                                                  "2"],
     "config file {steps_toml}: steps must be a positive integer, got 'many'"),
    ("config file missing", ["run", "--config", "{dir}/none.toml"], "config file not found"),
    ("--slices on a single image", ["run", "--slices", "5:2"],
     "sample:ct is a single image, not a volume: --slices needs a NIfTI volume (.nii, .nii.gz) "
     "or a DICOM series"),
    ("memory: far too large", ["run", "--size", "100000"],
     "GiB of memory (small network, 100000x100000 image) but this machine has"),
    ("BO bounds low >= high", ["bo", "--param", "prior_scale=0.4:0.01"],
     "--param prior_scale: low 0.4 must be below high 0.01"),
    ("BO log bounds <= 0", ["bo", "--param", "prior_scale=0:0.4:log"],
     "--param prior_scale: a log scale needs low > 0, got 0"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_files(tmp_path_factory.mktemp("inputs"))


class _FitStarted(Exception):
    """Raised instead of fitting: the input passed every check."""


@pytest.fixture
def no_fit(monkeypatch):
    """Fits stop where the training loop would begin (after model, guide and optimiser)."""

    def stop(*args, **kwargs):
        raise _FitStarted

    monkeypatch.setattr(pyrodip.infer.fitting.Fitting, "run", stop)


def run_cli(argv: list[str], out: Path, capsys) -> tuple[int | str, str]:
    """main's exit status (``"fit"`` when a fit started) and its stderr; --out defaults to
    ``out``."""
    if "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    try:
        code = main([*argv, "--quiet"])
    except SystemExit as stop:
        code = stop.code
    except _FitStarted:
        code = "fit"
    return code, capsys.readouterr().err


def snapshot(*folders: str | Path) -> dict[Path, tuple[int, int]]:
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        for path in Path(folder).rglob("*")
    }


def assert_clean_error(code, err: str) -> None:
    """Exit status 2 and one line, ``pyrodip: error: ...``, after any warnings."""
    lines = err.splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("pyrodip: error: "), err
    assert all(line.startswith("pyrodip: warning: ") for line in lines[:-1]), err


@pytest.mark.parametrize("argv, fragment", [
    pytest.param(argv, fragment, id=what, marks=NO_CUDA if "CUDA" in what else ())
    for what, argv, fragment in CASES
])
def test_bad_input_is_one_clean_line(argv, fragment, files, tmp_path, capsys, no_fit):
    before = snapshot(files["dir"], tmp_path)
    argv = [arg.format(**files) for arg in argv]
    code, err = run_cli(argv, tmp_path / "out", capsys)
    assert_clean_error(code, err)
    assert err.count("\n") == 1, err  # no warnings either: the cases are made to give none
    assert fragment.format(**files) in err
    assert snapshot(files["dir"], tmp_path) == before  # nothing written, no --out folder made


def test_the_api_raises_the_same_errors(files, tmp_path, capsys):
    missing = files["dir"] + "/missing.png"
    with pytest.raises(MissingFileError) as error:  # a FileNotFoundError
        prepare_observation(RunConfig(image=missing))
    with pytest.raises(InvalidInputError) as invalid:  # a ValueError
        RunConfig(steps=0)
    for exception, argv in ((error, ["--image", missing]), (invalid, ["--steps", "0"])):
        _, err = run_cli(["run", *argv], tmp_path / "out", capsys)
        assert err == f"pyrodip: error: {exception.value}\n"


# --- random option values ----------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-3, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e400", "-0", "0", "nan", "inf", "-inf", "1e-320", "10" * 12, "0x10"]),
)
BAD = st.one_of(NUMBERS, st.text(max_size=10))


def maybe(good: st.SearchStrategy) -> st.SearchStrategy[str]:
    """Mostly a valid value (as text), else a random number or string."""
    return st.one_of(good.map(str), good.map(str), BAD)


def names(*choices) -> st.SearchStrategy[str]:
    return maybe(st.sampled_from([c for group in choices for c in group]))


def floats(low: float, high: float) -> st.SearchStrategy[str]:
    return maybe(st.floats(low, high))


def ints(low: int, high: int) -> st.SearchStrategy[str]:
    return maybe(st.integers(low, high))


#: Each option and the values thrown at it. Sizes and angles stay moderate where valid (a huge
#: valid value takes long here); the guard's refusals of huge ones are in CASES.
OPTIONS = {
    "--task": names(TASKS),
    "--method": names(METHODS),
    "--prior": st.one_of(names(PRIORS), st.builds("{}:{}".format, names(PRIORS), NUMBERS)),
    "--guide": names(GUIDES, ["lowrank:2", "lowrank:0", "partial:net.head.*"]),
    "--noise": names(NOISE_MODELS),
    "--noise-level": names(NOISE_LEVELS),
    "--net": names(PRESETS),
    "--optimizer": names(OPTIMIZERS),
    "--engine": names(ENGINES),
    "--device": names(["cpu", "cuda", "cuda:1"]),
    "--mask": names(["strokes", "text", "random:0.3", "random:x"]),
    "--init-loc": names(["pytorch", "normal:0.1"]),
    "--layer-prior": names(["net.head.*=laplace:0.05", "net.body.*=normal:0.1", "x=normal:1"]),
    "--size": ints(16, 80),
    "--angles": ints(1, 200),
    "--factor": maybe(st.sampled_from([2, 4, 8])),
    "--slice": ints(-3, 3),
    "--seed": ints(0, 2**32 - 1),
    "--steps": ints(1, 10**6),
    "--burn-in": ints(0, 10**6),
    "--samples": ints(1, 1000),
    "--sample-every": ints(1, 1000),
    **{option: floats(1e-6, 1e3) for option in (
        "--lr", "--noise-std", "--prior-scale", "--photons", "--init-scale",
    )},
    **{option: floats(0, 10) for option in ("--temperature", "--weight-decay", "--jitter")},
    **{option: floats(0, 0.99) for option in ("--dropout", "--ema")},
}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({key: OPTIONS[key] for key in chosen})
))
def test_random_option_values_give_a_fit_or_a_clean_error(
    options, files, tmp_path, capsys, no_fit
):
    """Either the input passes every check up to the training loop (model, guide and
    optimiser built), or the CLI answers one clean error line."""
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "out"
    argv = ["run", "--image", files["png"], *[x for pair in options.items() for x in pair]]
    code, err = run_cli(argv, out, capsys)
    if code == "fit":
        assert "Traceback" not in err and "pyrodip: error" not in err
        assert not any(out.iterdir())  # the folder is made, but nothing is written in it
    else:
        assert_clean_error(code, err)
