"""Exact-score comparisons, with tolerances that hold on every kernel family a machine may have.

float32 kernels for AVX2, AVX-512 and AMX (and GPUs) sum in different orders, so one score moves
by a few float32 ulps of the values it was summed from: an absolute floor for scores near zero and
a relative part for large raw logits (a logit of 7.7 moves ~1e-5 where a sigmoid score moves 1e-7).
`make test-kernels` runs every test marked ``scores`` with PyTorch forced to each kernel family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Tolerance:
    absolute: float
    relative: float
    why: str


# one engine, float32: another kernel family or batch shape reorders the sums
FLOAT32 = Tolerance(1e-5, 1e-5, "float32 summed in another order")
# two engines, float32: fused attention and GELU kernels (ONNX Runtime, sentence-transformers' path)
ACROSS_ENGINES = Tolerance(2e-5, 2e-5, "another engine's fused float32 kernels")
# MLX's CPU backend runs reference BLAS and its own softmax and layer norm
MLX_CPU = Tolerance(1e-4, 1e-4, "MLX's CPU kernels against PyTorch's")


def assert_scores_close(
    actual: npt.ArrayLike, expected: npt.ArrayLike, tolerance: Tolerance = FLOAT32, *, what: str = "scores"
) -> None:
    """|actual - expected| <= absolute + relative * |expected|, element by element."""
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        atol=tolerance.absolute,
        rtol=tolerance.relative,
        err_msg=f"{what} differ by more than {tolerance.why} allows",
    )
