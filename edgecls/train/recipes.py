"""Named training presets: plain `TrainConfig` settings, so the command line reads them without torch.

`fast` is the airbench recipe (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024),
re-derived for `edgecls train`'s mean-reduced loss: airbench sums the loss over a 1024-image batch with
lr 11.5 / (1024 · (1 + 1/(1 − 0.85))), which is lr 1.5 on the mean; its decoupled weight decay of
0.0153 · 1024 / 7851 per step becomes SGD's coupled 0.00133 at lr 1.5. Every entry is an ordinary
`TrainConfig` field, so each part can be switched off on the command line and is recorded in the run.
Two changes for a 2-core CPU, both measured there: 12 epochs instead of airbench's 9.9 (they fit in 55 minutes
with tcmalloc), and each 1024-image step is computed as four 256-image micro-batches (gradients summed,
BatchNorm statistics per micro-batch), because under glibc's allocator a 2-core CPU trains whitened_vgg
1.6× faster at 256 than at 1024 (under tcmalloc the two measure the same).
"""

from __future__ import annotations

from edgecls.errors import ConfigError

RECIPES: dict[str, dict] = {
    "fast": {
        "epochs": 12,
        "batch_size": 1024,
        "micro_batch_size": 256,
        "optimizer": "sgd",
        "lr": 1.5,
        "momentum": 0.85,
        "nesterov": True,
        "weight_decay": 0.00133,
        "bias_lr_scale": 64.0,
        "schedule": "linear",
        "warmup_epochs": 2.3,
        "label_smoothing": 0.2,
        "lookahead": True,
        "augment": True,
        "alternating_flip": True,
        "crop_padding": 2,
        "pad_mode": "reflect",
        "whiten_init": True,
        "whiten_bias_epochs": 3,
    },
}


def recipe_settings(name: str | None) -> dict:
    if name is None:
        return {}
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return dict(RECIPES[name])
