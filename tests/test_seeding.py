"""pyrodip.seeding: one seed, independent and reproducible streams, and only the known ones."""

import pytest
import torch

from pyrodip.errors import InvalidInputError
from pyrodip.seeding import STREAMS, generator, member_seed


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


def test_member_seeds_are_the_runs_first_then_reproducible_and_distinct():
    assert member_seed(5, 0) == 5  # member 0 is the run's own fit
    seeds = [member_seed(5, k) for k in range(8)]
    assert seeds == [member_seed(5, k) for k in range(8)]
    assert len(set(seeds)) == 8 and all(0 <= s < 2**32 for s in seeds)
    assert member_seed(6, 1) != member_seed(5, 1)
    with pytest.raises(InvalidInputError, match="integer >= 0"):
        member_seed(5, -1)
