"""Independent random streams from one seed.

A run's ``seed`` seeds the network (its input, weights, jitter: the global generators) and,
through :func:`generator`, the simulated noise, the drawn masks and the held-out values. Each
of those draws from its own stream: seeded with the run's seed directly, the noise would reuse
the very uniform numbers that make the network's input, and the network could read the noise
of every pixel, held-out ones included, from its input (measured: the held-out error
correlated with the held-out noise, ``E[n e]`` about 0.3 ``E[e^2]``, before the streams were
split; about 0 after).

>>> a, b = generator(0, "noise"), generator(0, "heldout")
>>> bool(torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b)))
False
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InvalidInputError

#: The streams drawn from a run's seed besides the network's, each with its own key.
STREAMS = {"noise": 1, "mask": 2, "heldout": 3}
#: The key of the fit seeds of an ensemble's members (:func:`member_seed`), apart from STREAMS.
MEMBERS_KEY = 4


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for ``stream`` (one of :data:`STREAMS`) of the run seeded ``seed``,
    independent of ``torch.manual_seed(seed)`` and of the other streams."""
    if stream not in STREAMS:
        raise InvalidInputError(f"unknown random stream {stream!r}: one of {', '.join(STREAMS)}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(STREAMS[stream],))
    state = sequence.generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def member_seed(seed: int, member: int) -> int:
    """The fit seed of member ``member`` (0, 1, ...) of an ensemble run seeded ``seed``
    (:mod:`pyrodip.run.ensemble`): member 0 fits with ``seed`` itself, so it is the single fit
    of that run; member k > 0 with a seed in [0, 2^32) drawn from ``seed`` and k by
    ``numpy.random.SeedSequence`` (its own key, apart from :data:`STREAMS`). The observation,
    its noise, masks and held-out values are drawn from the run's seed, not from these.

    >>> member_seed(7, 0), member_seed(7, 1) == member_seed(7, 1), member_seed(7, 1) != 7
    (7, True, True)
    """
    if isinstance(member, bool) or not isinstance(member, int) or member < 0:
        raise InvalidInputError(f"an ensemble member is an integer >= 0, got {member!r}")
    if member == 0:
        return int(seed)
    sequence = np.random.SeedSequence(int(seed), spawn_key=(MEMBERS_KEY, member))
    return int(sequence.generate_state(1, np.uint32)[0])
