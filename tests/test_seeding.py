"""pyrodip.seeding: one seed, independent and reproducible streams, and only the known ones."""

import pytest
import torch

from pyrodip.errors import InvalidInputError
from pyrodip.seeding import STREAMS, generator


def test_each_stream_is_reproducible_and_its_own():
    draws = {stream: torch.rand(8, generator=generator(5, stream)) for stream in STREAMS}
    for stream, values in draws.items():
        assert torch.equal(values, torch.rand(8, generator=generator(5, stream)))
        assert not torch.equal(values, torch.rand(8, generator=generator(6, stream)))
    network = torch.rand(8, generator=torch.Generator().manual_seed(5))  # torch.manual_seed(5)
    assert len({tuple(v.tolist()) for v in [*draws.values(), network]}) == len(STREAMS) + 1


def test_an_unknown_stream_is_refused():
    with pytest.raises(InvalidInputError, match="unknown random stream 'weights': one of noise"):
        generator(0, "weights")
