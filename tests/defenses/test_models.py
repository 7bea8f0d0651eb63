"""Architectures: the reference sizes, 64x64 inputs, normalisation inside the model."""

from __future__ import annotations

import pytest
import torch

from defenses.models import ARCHS, build_model, count_parameters
from defenses.models.normalize import MEAN, STD


def test_reference_parameter_counts():
    # WideResNet-34-10 as in the TRADES and MART code; PreActResNet-18 with its final BatchNorm.
    assert count_parameters(build_model("wrn-34-10", 10)) == 46_160_474
    assert count_parameters(build_model("preact-resnet18", 10)) == 11_172_170
    assert count_parameters(build_model("resnet-small", 10)) < 400_000


@pytest.mark.parametrize("arch", ["resnet-small", "preact-resnet18"])
def test_64x64_images_give_one_logit_per_class(arch):
    model = build_model(arch, 7).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_normalisation_is_inside_the_model():
    model = build_model("resnet-small", 10).eval()
    x = torch.rand(3, 3, 64, 64)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - mean) / std))
    assert {"mean", "std"} <= set(model.state_dict())


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match="unknown architecture 'resnet-50'; choose one of " + ", ".join(ARCHS)):
        build_model("resnet-50", 10)
