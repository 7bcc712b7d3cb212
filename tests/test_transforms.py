import numpy as np
import torch

from edgecls.data.imageset import ImageSet
from edgecls.data.loader import BatchLoader
from edgecls.data.transforms import Augment, Normalization


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
