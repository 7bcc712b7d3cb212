import pytest
import torch

from edgecls.errors import ConfigError
from edgecls.zoo import count_macs, count_parameters, create_model, list_models, register_model

EXPECTED = {"alexnet", "baseline_cnn", "lenet5", "mobilenet_mod", "mobilenet_v2", "resnet18", "resnet34", "tronnet", "vgg16"}


def test_registry_lists_the_whole_zoo():
    assert EXPECTED <= set(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28)])
def test_every_model_runs_on_cifar_and_fashion_mnist_inputs(name, channels, size):
    model = create_model(name, num_classes=7, in_channels=channels, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_mobilenet_mod_matches_the_paper_and_torchvision():
    from torchvision.models import MobileNetV2

    model = create_model("mobilenet_mod")
    assert count_parameters(model) == 1_545_482
    assert 10.1e6 < count_macs(model) < 10.3e6
    assert isinstance(model, MobileNetV2)
    assert [block.out_channels for block in model.features[1:-1]] == [16, 24, 24, 32, 96, 96, 160, 160, 320]


@pytest.mark.parametrize(("name", "params"), [("lenet5", 62_006), ("resnet18", 11_173_962), ("vgg16", 14_986_698)])
def test_documented_parameter_counts(name, params):
    assert count_parameters(create_model(name)) == params


def test_leaky_relu_option_replaces_every_relu():
    model = create_model("resnet18", leaky_relu=0.1)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "LeakyReLU" in kinds and "ReLU" not in kinds


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="Did you mean mobilenet_mod"):
        create_model("mobilenet_mdo")


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"in_channels": 2}, {"input_size": 8}, {"num_classes": "10"}])
def test_invalid_builder_arguments_raise_clear_errors(kwargs):
    with pytest.raises(ConfigError):
        create_model("lenet5", **kwargs)


def test_duplicate_registration_raises():
    def lenet5(**_):
        return None

    with pytest.raises(ConfigError, match="registered twice"):
        register_model("again")(lenet5)
