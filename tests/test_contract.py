"""The image contract's value check (docs/rules.md section 2): finite, in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from arena.ground.contract import first_bad_image, in_unit_interval


def _images(*values):
    out = np.full((len(values), 3, 4, 4), 0.5, dtype=np.float32)
    for i, v in enumerate(values):
        out[i, 1, 2, 3] = v
    return out


@pytest.mark.parametrize("value", [0.0, 1.0, -0.0, 1e-45, 0.999999940])
def test_values_in_the_unit_interval_pass(value):
    assert in_unit_interval(_images(value, 0.25))
    assert first_bad_image(_images(value, 0.25)) is None


@pytest.mark.parametrize("value, problem", [
    (np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"), (-np.inf, "NaN or Inf"),
    (-1e-45, "outside"), (-0.5, "outside"), (1.0000001, "outside"), (3e38, "outside"),
])
def test_values_outside_fail_and_are_located(value, problem):
    images = _images(0.25, value)
    assert not in_unit_interval(images)
    index, what = first_bad_image(images)
    assert index == 1 and problem in what


def test_empty_and_non_contiguous_arrays():
    assert in_unit_interval(np.zeros((0, 3, 4, 4), dtype=np.float32))
    images = _images(0.2, 2.0)
    assert in_unit_interval(images[::2]) and not in_unit_interval(images[::-1])
    with pytest.raises(TypeError, match="float32"):
        in_unit_interval(images.astype(np.float64))
