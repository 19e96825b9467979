"""Embedded sample images, chosen by name as ``"sample:NAME"`` wherever an image is asked for.

Add your own with ``SAMPLES.register``:

>>> import numpy as np
>>> from pyrodip.io.images import load_image
>>> @SAMPLES.register("flat")
... def _flat():
...     return np.full((8, 8), 0.5)
>>> load_image("sample:flat")[0, 0, 0]
np.float32(0.5)
>>> SAMPLES.unregister("flat")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import MissingFileError
from ..registry import Registry
from .dicom import read_dicom

__all__ = ["SAMPLES", "SampleLoader"]

SampleLoader = Callable[[], np.ndarray]

SAMPLES: Registry[SampleLoader] = Registry("sample")
"""Embedded sample images by name, loaded with ``load_image("sample:NAME")``.

Each loader takes no arguments and returns an array that
:func:`~pyrodip.io.images.load_image` accepts from a ``.npy`` file (2-D, channels first or
last; integers or floats).
"""


def _pydicom_test_file(filename: str) -> np.ndarray:
    """A DICOM slice shipped with pydicom's test data."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(filename)
    if path is None:
        raise MissingFileError(
            f"pydicom's test file {filename} is missing: reinstall pydicom or use another sample"
        )
    return read_dicom(Path(path))


@SAMPLES.register("ct")
def _ct_sample() -> np.ndarray:
    """pydicom's ``CT_small.dcm``: a 128x128 CT slice."""
    return _pydicom_test_file("CT_small.dcm")


@SAMPLES.register("mr")
def _mr_sample() -> np.ndarray:
    """pydicom's ``MR_small.dcm``: a 64x64 MR slice (shown through its stored window)."""
    return _pydicom_test_file("MR_small.dcm")


@SAMPLES.register("phantom")
def _phantom_sample() -> np.ndarray:
    """scikit-image's Shepp-Logan phantom, downscaled from 400x400 to 128x128."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    image = resize(shepp_logan_phantom(), (128, 128), anti_aliasing=True)
    return np.clip(image, 0.0, 1.0)


@SAMPLES.register("retina")
def _retina_sample() -> np.ndarray:
    """scikit-image's RGB retina photograph, downscaled to 256x256."""
    from skimage.data import retina
    from skimage.transform import resize

    image = resize(retina(), (256, 256), anti_aliasing=True)
    return np.clip(image, 0.0, 1.0)
