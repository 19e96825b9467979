import os

import numpy as np
import pytest
import torch
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from skimage.io import imsave

import pyrodip.infer.loop
from pyrodip import Observation
from pyrodip.cli import main
from pyrodip.io.images import load_image
from pyrodip.seeding import generator

pyrodip.infer.loop.VALIDATE = True  # Pyro's checks on in every test fit

# Plugins the tests import on purpose: collecting them as doctest modules would register their
# names in every test of the session.
collect_ignore = ["deblur_plugin.py", "fault_injection.py"]


# One thread per process: the suite's images are tiny, and subprocesses (CLI runs, Dask
# workers) inherit OMP_NUM_THREADS, so nothing oversubscribes the cores.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def phantom64() -> torch.Tensor:
    """A 1 x 64 x 64 Shepp-Logan phantom in [0, 1] (from scikit-image, no download)."""
    from skimage.transform import resize

    image = load_image("sample:phantom")[0]
    return torch.from_numpy(resize(image, (64, 64), anti_aliasing=True)).float()[None]


@pytest.fixture
def noisy64(phantom64) -> Observation:
    return Observation.simulate(phantom64, noise=0.1, seed=0, name="phantom64")


@pytest.fixture
def tiny_png(tmp_path, phantom64):
    """The 64 x 64 phantom as an 8-bit PNG file."""
    path = tmp_path / "tiny.png"
    imsave(path, (phantom64[0].numpy() * 255).astype(np.uint8))
    return path


# --- helpers the test modules import (``from conftest import ...``) ---------------------------

#: The devices a test runs on: the CPU always, CUDA (marked ``gpu``) where there is one.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


#: The tolerance the noise estimate keeps at the levels 0.05 to 0.2 (experiments/
#: noise_estimation.py measures it on the shared images; below 0.05 fine texture makes it
#: overestimate).
NOISE_ESTIMATE_TOLERANCE = 0.15


def noisy_sample(name: str, std: float, seed: int = 0) -> torch.Tensor:
    """An embedded sample with Gaussian noise of ``std`` from the run's noise stream, clipped
    to [0, 1] as a stored image is."""
    clean = torch.from_numpy(load_image(f"sample:{name}"))
    noise = torch.randn(clean.shape, generator=generator(seed, "noise"))
    return (clean + std * noise).clamp(0, 1)


def exit_code(args: list[str]) -> int:
    """main's return value, or the code of the SystemExit that argparse raises."""
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code


def write_dicom(path, pixels, with_pixels=True, **attributes):
    """Write a minimal uncompressed 16-bit gray DICOM file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    for key, value in attributes.items():
        setattr(dataset, key, value)
    if with_pixels:
        dataset.PixelData = pixels.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)

