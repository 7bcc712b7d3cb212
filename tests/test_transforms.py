import numpy as np
import torch

from edgecls.data.imageset import ImageSet
from edgecls.data.loader import BatchLoader
from edgecls.data.transforms import Augment
from edgecls.imaging import Normalization


def _set(n=10):
    images = np.arange(n * 4 * 4 * 3, dtype=np.int64).reshape(n, 4, 4, 3).astype(np.uint8)
    return ImageSet("t", images, np.arange(n) % 2, ("a", "b"))


def test_zscore_and_minmax_normalization():
    images = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200)])
    z = Normalization.fit(images, "zscore")
    assert np.allclose(z.mean, 100) and np.allclose(z.std, np.std([0, 100, 200]))
    m = Normalization.fit(images, "minmax")
    out = m.apply(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert out.min() == 0 and abs(float(out.max()) - 200 / 255) < 1e-6


def test_crop_and_flip_are_pixel_exact_shifts():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    out = Augment(crop_padding=2, flip=True).crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(2):
        vals = set(out[i].flatten().tolist()) - {0}
        assert vals <= set(x[i].flatten().tolist())


def test_affine_rotation_keeps_shape():
    x = torch.randn(3, 3, 8, 8)
    out = Augment(rotate_degrees=10, shift_fraction=0.1).affine(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_loader_is_deterministic_per_epoch_and_shards_across_ranks():
    data = _set(10)
    norm = Normalization("minmax", (0.0,) * 3, (255.0,) * 3)
    a = [y.tolist() for _, y in BatchLoader(data, 4, norm, shuffle=True, seed=3).epoch(2)]
    b = [y.tolist() for _, y in BatchLoader(data, 4, norm, shuffle=True, seed=3).epoch(2)]
    c = [y.tolist() for _, y in BatchLoader(data, 4, norm, shuffle=True, seed=3).epoch(3)]
    assert a == b and a != c
    r0 = BatchLoader(data, 4, norm, shuffle=True, seed=3, rank=0, world_size=2)._indices(0)
    r1 = BatchLoader(data, 4, norm, shuffle=True, seed=3, rank=1, world_size=2)._indices(0)
    assert len(r0) == len(r1) == 5 and set(r0) | set(r1) == set(range(10))


def test_reflect_crop_matches_torch_reflection_padding():
    x = torch.arange(3 * 2 * 6 * 6, dtype=torch.uint8).reshape(3, 2, 6, 6)
    out = Augment(crop_padding=2, flip=False, pad_mode="reflect").crop_flip(x, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(3):
        windows = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i].float(), w) for w in windows)  # every crop is a window of the reflected image


def test_alternating_flip_mirrors_each_image_on_every_other_epoch():
    data = _set(8)
    norm = Normalization("minmax", (0.0,) * 3, (1.0,) * 3)
    loader = BatchLoader(data, 8, norm, Augment(crop_padding=0, alternating_flip=True), seed=5)
    e1, e2, e3 = (next(loader.epoch(e))[0] for e in (1, 2, 3))
    assert torch.equal(e1, e3) and torch.equal(e2, e1.flip(3))
    flipped = [not torch.equal(e1[i], torch.from_numpy(data.images[i]).permute(2, 0, 1).float()) for i in range(8)]
    assert 0 < sum(flipped) < 8  # a random half starts mirrored


def test_random_erasing_blanks_one_rectangle_of_2_to_40_percent_in_the_chosen_share():
    import pytest

    from edgecls.errors import ConfigError

    x = torch.ones(400, 1, 28, 28)
    out = Augment(erase=1.0).random_erase(x, torch.Generator().manual_seed(0))
    for image in out[:, 0]:
        rows, cols = torch.nonzero(image == 0, as_tuple=True)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == height * width  # one solid rectangle
        assert 0.02 * 784 * 0.5 <= len(rows) <= 0.40 * 784 * 1.3  # within rounding of 2–40% of the area
    half = Augment(erase=0.5).random_erase(x, torch.Generator().manual_seed(1))
    erased = (half == 0).flatten(1).any(1).float().mean()
    assert 0.4 < erased < 0.6
    assert torch.equal(Augment().random_erase(x, torch.Generator()), x)
    with pytest.raises(ConfigError, match="probability"):
        Augment(erase=1.5)


def test_garments_are_mirrored_in_training_digits_are_not(tmp_path):
    from synthetic import write_idx

    from edgecls.data import load_dataset
    from edgecls.train import TrainConfig
    from edgecls.train.loop import _Run as Run

    for kind, flips in (("fashion-mnist", True), ("mnist", False)):
        root = write_idx(tmp_path / kind, kind, n_train=60, n_test=20)
        cfg = TrainConfig(
            model="lenet5", dataset=kind, data_dir=str(root), out=str(tmp_path / f"run-{kind}"), epochs=1, erase=0.25
        )
        run = Run(cfg, load_dataset(kind, "train", root), None, quiet=True)
        assert run.train_loader.augment.flip is flips and run.train_loader.augment.erase == 0.25


def test_augmix_mixes_each_group_on_its_own_repeats_for_a_seed_and_leaves_the_global_random_state():
    from edgecls.data.transforms import AUGMIX_GROUP, Augment

    x = torch.randint(0, 256, (3 * AUGMIX_GROUP, 3, 32, 32), dtype=torch.uint8)
    augment = Augment(augmix=True)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    once = augment.mix(x, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(1), before)  # dropout's random state is not consumed by the augmentation
    again = augment.mix(x, torch.Generator().manual_seed(1))
    assert once.dtype == torch.uint8 and once.shape == x.shape and torch.equal(once, again)
    changed = [
        (once[i : i + AUGMIX_GROUP] != x[i : i + AUGMIX_GROUP]).float().mean() for i in range(0, len(x), AUGMIX_GROUP)
    ]
    assert all(share > 0.05 for share in changed)
    assert torch.equal(Augment().mix(x, torch.Generator()), x)


def test_a_card_names_the_augmentations_the_run_trained_with():
    from edgecls.train.config import TrainConfig

    names = Augment.from_config(TrainConfig(model="mobilenet_mod", augmix=True)).names()
    assert names[0] == "random crop after 4-pixel zeros padding" and names[1] == "horizontal flip"
    assert names[2].startswith("AugMix") and len(names) == 3
    digits = Augment.from_config(TrainConfig(model="lenet5", dataset="mnist", erase=0.5, crop_padding=0)).names()
    assert digits == ["random erasing (p 0.5)"]  # no flip for digits
    assert Augment.from_config(TrainConfig(model="lenet5", augment=False)) is None
