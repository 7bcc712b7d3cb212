import pytest
import torch

from edgecls.errors import ConfigError
from edgecls.zoo import count_macs, count_parameters, create_model, list_models, register_model

EXPECTED = {
    "alexnet",
    "baseline_cnn",
    "googlenet",
    "inception_small",
    "lenet5",
    "mobilenet_mod",
    "mobilenet_v2",
    "resnet18",
    "resnet34",
    "tronnet",
    "vgg16",
}


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


@pytest.mark.parametrize(
    ("name", "params"), [("resnet20", 269_722), ("resnet32", 464_154), ("resnet44", 658_586), ("resnet56", 853_018)]
)
def test_cifar_resnets_have_the_papers_sizes(name, params):
    model = create_model(name)
    assert count_parameters(model) == params  # He et al. table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M
    assert count_macs(model) == pytest.approx(
        {"resnet20": 40.6e6, "resnet32": 68.9e6, "resnet44": 97.2e6, "resnet56": 125.5e6}[name], rel=0.01
    )


def test_whitened_vgg_is_the_airbench_shape():
    model = create_model("whitened_vgg")
    assert count_parameters(model) == 1_972_792 and count_macs(model) == pytest.approx(118.1e6, rel=0.01)
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [
        24,
        64,
        64,
        256,
        256,
        256,
        256,
    ]
    assert not model.stem.weight.requires_grad and model.stem.bias.requires_grad
    conv = model.features[0][0]
    assert torch.equal(conv.weight[:24, :, 1, 1], torch.eye(24))  # Dirac start: passes the stem's channels through


@pytest.mark.parametrize("channels, patch", [(3, 2), (1, 3)])
def test_whitening_stem_decorrelates_training_patches(channels, patch):
    torch.manual_seed(0)
    mixing = torch.randn(channels, channels)
    images = (
        torch.einsum("ij,njhw->nihw", mixing, torch.randn(64, channels, 20, 20)).cumsum(-1) / 4
    )  # correlated channels and pixels
    model = create_model("whitened_vgg", in_channels=channels, input_size=20, stem_patch=patch)
    model.init_whitening(images, eps=0.0)
    out = model.stem(images) - model.stem.bias.view(1, -1, 1, 1)
    n = channels * patch * patch
    assert out.shape[1] == 2 * n
    half = out[:, :n].permute(1, 0, 2, 3).reshape(n, -1)
    covariance = half @ half.T / half.shape[1]
    assert torch.allclose(covariance, torch.eye(n), atol=1e-3)
    assert torch.allclose(out[:, n:], -out[:, :n], atol=1e-5)


def test_whitened_vgg_names_the_smallest_input_its_stem_allows():
    with pytest.raises(ConfigError, match="at least 18×18 .*3×3 stem"):
        create_model("whitened_vgg", in_channels=1, input_size=17, stem_patch=3)


def test_the_catalog_matches_the_code():
    """`edgecls models` reads catalog.json (no torch); it must say what the registered models are."""
    import sys
    from pathlib import Path

    from edgecls.zoo.catalog import load_catalog

    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from write_catalog import catalog_from_code

    assert load_catalog() == catalog_from_code()["models"], "run `python tools/write_catalog.py` after changing the zoo"


def test_the_small_inception_has_zhang_et_al_s_published_parameter_count():
    """Zhang et al. 2017 (table 1) count 1,649,402 parameters: each convolution with its bias. Here batch norm follows
    each convolution, its shift taking the bias's place and its scale added: the published count is ours less the
    batch-norm scales."""
    model = create_model("inception_small")
    scales = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert count_parameters(model) - scales == 1_649_402
    assert count_parameters(model) == 1_651_114 and count_macs(model) == 266_734_880


def test_googlenet_is_torchvisions_inception_blocks_with_a_cifar_stem():
    """The nine Inception blocks hold exactly the parameters of torchvision's GoogLeNet's (whose whole ImageNet model
    has the 6,624,904 torchvision documents); the stem and the 10-class head are CIFAR-sized."""
    from torchvision.models.googlenet import GoogLeNet

    from edgecls.zoo.inception import GOOGLENET_BLOCKS

    reference = GoogLeNet(aux_logits=False, init_weights=False)
    assert count_parameters(reference) == 6_624_904
    model = create_model("googlenet")
    for name in GOOGLENET_BLOCKS:
        assert count_parameters(getattr(model, name)) == count_parameters(getattr(reference, name)), name
    assert count_parameters(model) == 5_490_986 and count_macs(model) == 1_337_141_248


def test_googlenet_aux_classifiers_train_and_vanish_in_evaluation():
    from edgecls.train.loop import AUX_WEIGHT

    model = create_model("googlenet", aux_logits=True)
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert [t.shape for t in out] == [(2, 10)] * 3 and AUX_WEIGHT == 0.3
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
