"""Batched augmentation on uint8 tensors (normalization is the image contract's: `edgecls.imaging`).

Augmentation runs on whole batches with tensor indexing (no per-image Python loop, no PIL), on the
device the batch lives on, so a CPU or GPU training step is not starved by its input pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgecls.errors import ConfigError
from edgecls.names import PAD_MODES

AUGMIX_GROUP = 16  # images mixed with one draw of AugMix's chains


@dataclass(frozen=True)
class Augment:
    """Random crop after padding, horizontal flip, optional small rotation/shift, optional random erasing.

    `alternating_flip` (airbench): each image gets one random flip bit for the whole run and is mirrored on
    every other epoch from there, so consecutive epochs always see both views instead of a coin toss each.
    `erase` (Zhong et al., 2020, "Random Erasing Data Augmentation"): with this probability an image gets one
    rectangle of 2–40% of its area, aspect 0.3–3.3, set to 0 after normalization (the dataset mean).
    `augmix` (Hendrycks et al., ICLR 2020): torchvision's `AugMix` with `all_ops=False`, the paper's protocol for
    robustness tests: chains of autocontrast, equalize, posterize, rotate, solarize, shear and translate mixed with
    the image, none of them a condition of `edgecls.corruptions` (no noise, blur, contrast, brightness or JPEG).
    torchvision draws one chain for a whole tensor, so the batch is mixed in groups of `AUGMIX_GROUP` images, each
    group its own draw: per image costs 5.4 ms (an epoch of 45,000 images 4 minutes longer on 2 cores), per group
    of 16 0.7 ms. The draws come from the loader's generator, so a run repeats.
    """

    crop_padding: int = 4
    flip: bool = True
    rotate_degrees: float = 0.0
    shift_fraction: float = 0.0
    pad_mode: str = "zeros"
    alternating_flip: bool = False
    erase: float = 0.0
    augmix: bool = False

    @classmethod
    def from_config(cls, cfg) -> Augment | None:
        """The augmentation a `TrainConfig` asks for (None for --no-augment). No flip for MNIST: digits are not
        mirror-symmetric; garments are."""
        if not cfg.augment:
            return None
        return cls(
            crop_padding=cfg.crop_padding,
            flip=cfg.dataset != "mnist",
            rotate_degrees=cfg.rotate_degrees,
            shift_fraction=cfg.shift_fraction,
            pad_mode=cfg.pad_mode,
            alternating_flip=cfg.alternating_flip,
            erase=cfg.erase,
            augmix=cfg.augmix,
        )

    def names(self) -> list[str]:
        """The augmentations in words, as a model card lists them."""
        names = [f"random crop after {self.crop_padding}-pixel {self.pad_mode} padding"] if self.crop_padding else []
        if self.flip:
            names.append("horizontal flip" + (", alternating epochs" if self.alternating_flip else ""))
        if self.rotate_degrees:
            names.append(f"rotation ±{self.rotate_degrees:g}°")
        if self.shift_fraction:
            names.append(f"shift ±{self.shift_fraction:g} of the size")
        if self.erase:
            names.append(f"random erasing (p {self.erase:g})")
        if self.augmix:
            names.append(
                "AugMix (torchvision, all_ops=False: autocontrast, equalize, posterize, rotate, solarize, "
                "shear, translate)"
            )
        return names

    def __post_init__(self) -> None:
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {self.pad_mode!r}")
        if not 0.0 <= self.erase <= 1.0:
            raise ConfigError(f"--erase is a probability in [0, 1], got {self.erase}")

    def crop_flip(self, x: torch.Tensor, gen: torch.Generator, flip_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Crop and flip a uint8 batch; `flip_mask` (N bools) replaces the coin toss when given."""
        n, c, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            oy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
            rows = oy[:, None] + torch.arange(h, device=x.device)
            cols = ox[:, None] + torch.arange(w, device=x.device)
            if self.pad_mode == "reflect":
                rows, cols = _reflect(rows - p, h), _reflect(cols - p, w)
            else:
                x = F.pad(x, (p, p, p, p))
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(c, device=x.device)[None, :, None, None]
            x = x[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]
        if self.flip:
            if flip_mask is None:
                flip_mask = torch.rand(n, generator=gen) < 0.5
            x = torch.where(flip_mask.to(x.device)[:, None, None, None], x.flip(3), x)
        return x

    def mix(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """AugMix on a uint8 batch, group by group; a no-op unless configured."""
        if not self.augmix:
            return x
        from torchvision.transforms import v2

        augmix = v2.AugMix(all_ops=False)
        seeds = torch.randint(0, 2**62, (-(-len(x) // AUGMIX_GROUP),), generator=gen).tolist()
        with torch.random.fork_rng(devices=[]):  # the training's own random state (dropout) is left as it was
            groups = []
            for seed, start in zip(seeds, range(0, len(x), AUGMIX_GROUP), strict=True):
                torch.manual_seed(seed)
                groups.append(augmix(x[start : start + AUGMIX_GROUP].cpu()))
        return torch.cat(groups).to(x.device)

    def affine(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Rotation and shift on a float batch; a no-op unless configured."""
        if not self.rotate_degrees and not self.shift_fraction:
            return x
        n = x.shape[0]
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(self.rotate_degrees)
        shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * self.shift_fraction * 2
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")

    def random_erase(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One zeroed rectangle in each of a random `erase` share of a normalized float batch; a no-op at 0."""
        if not self.erase:
            return x
        n, _, h, w = x.shape
        area = (0.02 + 0.38 * torch.rand(n, generator=gen)) * h * w
        aspect = torch.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * torch.rand(n, generator=gen))
        eh = (area * aspect).sqrt().round().clamp(1, h)
        ew = (area / aspect).sqrt().round().clamp(1, w)
        top = (torch.rand(n, generator=gen) * (h - eh + 1)).floor()
        left = (torch.rand(n, generator=gen) * (w - ew + 1)).floor()
        chosen = torch.rand(n, generator=gen) < self.erase
        rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
        inside_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
        mask = (inside_rows[:, :, None] & inside_cols[:, None, :] & chosen[:, None, None])[:, None].to(x.device)
        return x.masked_fill(mask, 0.0)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-p, size + p) into [0, size) as reflection padding does (edge pixel not repeated)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)
