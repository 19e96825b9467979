"""Forward operators A of the inverse problem y ~ noise(A(x)).

Operators are differentiable ``nn.Module``s acting on images shaped (B, C, H, W). Linear
operators also provide :meth:`LinearOperator.adjoint`, checked by
:meth:`LinearOperator.adjointness_error`.

>>> A = Identity()
>>> x = torch.rand(1, 1, 4, 4)
>>> bool(torch.equal(A(x), x))
True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearOperator(nn.Module):
    """A linear forward operator with an adjoint."""

    def adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def adjointness_error(self, x_shape: tuple[int, ...], generator=None) -> float:
        """Relative gap between <A x, y> and <x, A^T y> for random x, y (0 for a true adjoint)."""
        x = torch.randn(x_shape, generator=generator)
        y = torch.randn(self(x).shape, generator=generator)
        lhs = (self(x) * y).sum()
        rhs = (x * self.adjoint(y)).sum()
        return float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-12))


class Identity(LinearOperator):
    """Denoising: A(x) = x."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y
