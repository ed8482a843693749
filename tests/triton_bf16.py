"""bfloat16 in Triton's CPU interpreter, as a GPU computes it, so the fused kernels' bfloat16 path is tested in CI.

The interpreter stores bfloat16 tiles as their raw 16 bits (numpy has no bfloat16) and gets two operations wrong:
- `tl.dot` multiplies the raw bits as integers. A GPU's bfloat16 matrix unit multiplies the values, exactly (a
  product of two 8-bit significands fits float32's 24), and accumulates in float32: the same as casting both
  tiles to float32 (exact) and multiplying there, which is what the taught interpreter does.
- a float32 -> bfloat16 cast drops the low 16 bits (rounds toward zero, a bias of half a unit on average) where a
  GPU, like PyTorch, rounds to nearest, ties to even: the taught interpreter casts through PyTorch.

`tests/model/test_triton_bf16.py` checks both against PyTorch on a small kernel.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch

BF16_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
"""Where the bfloat16 kernel tests run: the GPU where there is one, else the taught interpreter."""


@functools.cache
def teach_interpreter_bfloat16() -> str | None:
    """Patch the interpreter's bfloat16 matrix product and cast, once; None when done, else why it could not be
    (another Triton's interpreter, with other internals): the bfloat16 tests then skip with that reason."""
    try:
        import numpy as np
        import triton.language as tl
        from triton.runtime import interpreter

        convert = interpreter._convert_float
        builder = interpreter.InterpreterBuilder
        dot = builder.create_dot
        if not hasattr(builder, "cast_impl"):
            return "this Triton's interpreter has no cast_impl to teach bfloat16"
    except (ImportError, AttributeError) as exc:
        return f"this Triton's interpreter cannot be taught bfloat16 ({exc})"

    def convert_float(values: Any, input_dtype: Any, output_dtype: Any, rounding_mode: Any) -> Any:
        if input_dtype == tl.float32 and output_dtype == tl.bfloat16:
            floats = np.frombuffer(values.tobytes(), dtype=np.float32).reshape(values.shape)
            rounded = torch.from_numpy(floats.copy()).to(torch.bfloat16)  # to nearest, ties to even
            return rounded.view(torch.int16).numpy().view(np.uint16)
        return convert(values, input_dtype, output_dtype, rounding_mode)

    def create_dot(self: Any, a: Any, b: Any, d: Any, input_precision: Any, max_num_imprecise_acc: Any) -> Any:
        if a.dtype.scalar == tl.bfloat16 or b.dtype.scalar == tl.bfloat16:
            a, b = self.cast_impl(a, tl.float32), self.cast_impl(b, tl.float32)  # exact
        return dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    interpreter._convert_float = convert_float
    builder.create_dot = create_dot
    return None


def bfloat16_runs() -> pytest.MarkDecorator:
    """Skip a bfloat16 kernel test only on the CPU, and only where the interpreter could not be taught."""
    reason = teach_interpreter_bfloat16() if BF16_DEVICE == "cpu" else None
    return pytest.mark.skipif(reason is not None, reason=str(reason))
