"""Bad input is refused before any fit, with one line on stderr and exit status 2; and the
resource guard (pyrodip.run.resources) refuses fits that will not fit the device's memory."""

import dataclasses
import re
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

import pyrodip.infer.loop
import pyrodip.run.resources
from pyrodip import Observation, RunConfig
from pyrodip.bayes.guides import GUIDES
from pyrodip.bayes.networks import PRESETS, NetConfig
from pyrodip.bayes.priors import PRIORS
from pyrodip.cli import main
from pyrodip.errors import InvalidInputError, MissingFileError
from pyrodip.infer.elbo import ENGINES, make_loss
from pyrodip.infer.methods import METHODS
from pyrodip.infer.optimizers import OPTIMIZERS
from pyrodip.physics.noise import NOISE_MODELS
from pyrodip.physics.tasks import TASKS
from pyrodip.run.config import NOISE_LEVELS
from pyrodip.run.fit import build
from pyrodip.run.observe import prepare_observation
from pyrodip.run.resources import (
    activation_floats_per_pixel,
    check_cuda_index,
    check_memory,
    count_weights,
    cuda_available_bytes,
    estimate_memory,
)


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
     "prior must be a string, got 3"),
    ("config file missing", ["run", "--config", "{dir}/none.toml"], "config file not found"),
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

    monkeypatch.setattr(pyrodip.infer.loop._Fitting, "run", stop)


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


# --- the resource guard ------------------------------------------------------------------------

SMALL, PAPER = NetConfig.preset("small"), NetConfig.preset("paper")


def test_activations_are_counted_layer_by_layer():
    # By hand, for the small net (4 scales of 32 channels, 4 skip channels, 32 inputs): scale 0
    # keeps 2 padded copies of z (64), skip conv+BN (8), the strided and second conv (48 at
    # 1/4 the pixels), concatenation/BN/padded copy (3 x 36) and the up convs (6 x 32) = 420
    # per pixel; the deeper scales 452 each at 1/4, 1/16, 1/64; the head 2 x 32 + 3 per channel.
    assert activation_floats_per_pixel(SMALL, 1) == 420 + 452 * 21 / 64 + 67
    assert activation_floats_per_pixel(SMALL, 3) == activation_floats_per_pixel(SMALL, 1) + 6


@pytest.mark.parametrize("normalization", ["batch", "none"])
def test_activations_match_what_autograd_keeps(normalization):
    """The count per pixel against the tensors autograd really saves (small net, 32 and 64
    px: the difference removes what does not grow with the image)."""

    def saved_bytes(side: int) -> int:
        observation = Observation.simulate(torch.rand(1, side, side), noise=0.1, seed=0)
        model, guide = build(RunConfig(normalization=normalization), observation)
        loss_fn = make_loss(model, guide)
        params = {p.untyped_storage().data_ptr() for p in loss_fn.parameters()}
        saved = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss_fn(observation.observation[None])
        return sum(saved.values())

    measured = (saved_bytes(64) - saved_bytes(32)) / (64**2 - 32**2) / 4
    net = dataclasses.replace(SMALL, normalization=normalization)
    assert measured == pytest.approx(activation_floats_per_pixel(net, 1), rel=0.02)


def test_estimate_grows_with_pixels_channels_and_net():
    config = RunConfig(steps=100)
    base = estimate_memory(config, (1, 128, 128))
    double = estimate_memory(config, (1, 256, 256))
    assert double.activations == 4 * base.activations
    assert double.weights == base.weights and double.runtime == base.runtime
    widest = 36  # the small net's concatenation at full resolution: 4 skip + 32 up channels
    assert base.activations == 4 * 128**2 * (activation_floats_per_pixel(SMALL, 1) + 4 * widest)
    color = estimate_memory(config, (3, 128, 128))
    assert color.activations - base.activations == 4 * 128**2 * 6  # sigmoid, residual, y
    assert color.images - base.images == 4 * 128**2 * 16 * 2
    # Per weight: mean-field keeps 2 values x (value, gradient, Adam's 2, a rollback copy of 3)
    # plus 11 for the step's sample and 1 initial copy; MAP 1 x 7 + 3 + 1.
    assert base.weights == 4 * 26 * count_weights(SMALL, 1) == 4 * 26 * 121185
    assert estimate_memory(config.replace(method="dip"), (1, 128, 128)).weights == 4 * 11 * 121185
    paper = estimate_memory(config.replace(net="paper"), (1, 128, 128))
    assert paper.activations > 3 * base.activations and paper.weights > 15 * base.weights
    ct = estimate_memory(config.replace(task="ct", angles=45), (1, 128, 128))
    assert ct.operator == 4 * 6 * 45 * 128**2


def test_refusal_names_the_estimate_the_memory_and_what_fits(monkeypatch):
    config = RunConfig(net="paper")
    shape = (1, 1024, 1024)
    available = estimate_memory(config.replace(net="small"), shape).total + 1
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: available)
    with pytest.raises(InvalidInputError) as refused:
        check_memory(config, shape)
    message = str(refused.value)
    needed = estimate_memory(config, shape).total / 2**30
    match = re.fullmatch(
        rf"this fit needs about {needed:.1f} GiB of memory \(paper network, 1024x1024 image\) "
        rf"but this machine has {available / 2**30:.1f} GiB available: use `net=small` or "
        r"`size=(\d+)`",
        message,
    )
    assert match, message
    size = int(match.group(1))  # the largest multiple of 32 that fits
    assert size % 32 == 0
    assert estimate_memory(config, (1, size, size)).total <= available
    assert estimate_memory(config, (1, size + 32, size + 32)).total > available


def test_nothing_fits_names_the_steps(monkeypatch):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: 2**30)
    with pytest.raises(InvalidInputError, match="GiB available: use fewer `steps`$"):
        check_memory(RunConfig(steps=10**12), (1, 64, 64))


def test_fit_is_guarded(monkeypatch, noisy64):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: 2**20)
    with pytest.raises(InvalidInputError, match=r"needs about 0\.\d GiB .* has 0.0 GiB"):
        pyrodip.fit(noisy64, RunConfig(steps=3, samples=2), progress=False)


def test_unknown_memory_is_no_refusal(monkeypatch):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: None)
    estimate = check_memory(RunConfig(), (1, 10**5, 10**5))
    assert estimate.total > 2**40


def test_cuda_memory_counts_the_free_and_the_cached():
    gib = 2**30
    assert cuda_available_bytes(free=10 * gib, reserved=2 * gib, allocated=gib) == 11 * gib
    assert cuda_available_bytes(free=10 * gib, reserved=gib, allocated=gib) == 10 * gib


def test_a_missing_cuda_device_is_refused_by_name():
    check_cuda_index(torch.device("cuda:1"), 2)
    check_cuda_index(torch.device("cuda"), 1)
    with pytest.raises(InvalidInputError, match=r"^device cuda:1 does not exist: this machine "
                       r"has 1 CUDA device \(cuda:0 to cuda:0\)$"):
        check_cuda_index(torch.device("cuda:1"), 1)
    with pytest.raises(InvalidInputError, match=r"has 0 CUDA devices \(cuda:0 to cuda:-1\)"):
        check_cuda_index(torch.device("cuda"), 0)


def test_a_cuda_refusal_names_the_device(monkeypatch):
    monkeypatch.setattr(pyrodip.run.resources, "available_memory", lambda device: 11 * 2**30)
    with pytest.raises(InvalidInputError, match=r"\(paper network, 1536x1536 image\) but cuda:0 "
                       r"has 11.0 GiB available: use `net=small` or `size=\d+`$"):
        check_memory(RunConfig(net="paper", device="cuda"), (1, 1536, 1536), "cuda:0")


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="no /proc/meminfo")
def test_available_cpu_memory_is_memavailable_in_bytes():
    def mem_available() -> int:
        line = next(line for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemAvailable:"))
        assert line.endswith(" kB")
        return int(line.split()[1]) * 1024

    before = mem_available()
    available = pyrodip.run.resources.available_memory("cpu")
    after = mem_available()
    slack = 64 * 2**20  # other processes come and go between the reads
    assert min(before, after) - slack <= available <= max(before, after) + slack


def test_a_renamed_setting_names_its_successor(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("kl_weight = 0.3\n")
    with pytest.raises(InvalidInputError, match="'kl_weight' in config .* is now 'temperature'"):
        RunConfig.from_toml(path)
