"""Optimizers and learning-rate schedules by name, and Lookahead (the `fast` recipe's weight averaging)."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgecls.train.config import TrainConfig


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters; with `bias_lr_scale` ≠ 1 the BatchNorm shifts get their own group at that multiple
    of the learning rate, their weight decay divided by it so the decay per step stays that of the others."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if cfg.bias_lr_scale == 1.0:
        return [{"params": [p for _, p in trainable]}]
    norm_shifts = {
        id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }
    return [
        {"params": [p for _, p in trainable if id(p) not in norm_shifts]},
        {
            "params": [p for _, p in trainable if id(p) in norm_shifts],
            "lr": cfg.lr * cfg.bias_lr_scale,
            "weight_decay": cfg.weight_decay / cfg.bias_lr_scale,
        },
    ]


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Schedule:
    """One object that knows when to step: cosine and linear per iteration, the others per epoch.

    `cosine` warms up linearly from 0 and decays to 0; `linear` (airbench) warms up from 0.2·lr and decays
    linearly to 0.07·lr at the last step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
        self.kind = cfg.schedule
        total = cfg.epochs * steps_per_epoch
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        if self.kind == "cosine":

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        elif self.kind == "linear":

            def linear(step: int) -> float:
                if step < warmup:
                    return 0.2 + 0.8 * step / warmup
                return 1.0 - 0.93 * min(1.0, (step - warmup) / max(1, total - warmup))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear)
        elif self.kind == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
        elif self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.gamma, patience=3)
        else:
            self.scheduler = None

    def after_step(self) -> None:
        if self.kind in ("cosine", "linear"):
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.kind == "step":
            self.scheduler.step()
        elif self.kind == "plateau":
            self.scheduler.step(val_loss)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler and state:
            self.scheduler.load_state_dict(state)


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The model as an ordered list of blocks: the children of `features`/`layerN` expanded, others as they are."""
    blocks: list[nn.Module] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential) and (name == "features" or name.startswith("layer")):
            blocks.extend(child.children())
        else:
            blocks.append(child)
    return blocks


def freeze_all_but_last(model: nn.Module, trainable_blocks: int) -> int:
    """Freeze every parameter except those of the last `trainable_blocks` blocks (the head is the last).

    Returns the number of trainable parameters left.
    """
    blocks = [b for b in model_blocks(model) if any(True for _ in b.parameters())]
    for p in model.parameters():
        p.requires_grad_(False)
    for block in blocks[len(blocks) - max(1, trainable_blocks) :]:
        for p in block.parameters():
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Lookahead:
    """Lookahead as airbench runs it: every `every` steps the weights are pulled into a slow copy and reset to it.

    The slow copy's decay grows as 0.95^5 · (step/total)^3 — no averaging early, heavy averaging at the end —
    and the final step copies the slow weights into the model. BatchNorm statistics are averaged too.
    """

    def __init__(self, model: nn.Module, total_steps: int, every: int = 5):
        self.model = model
        self.total_steps = total_steps
        self.every = every
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """`step` counts optimizer steps from 1 over the whole run."""
        if step >= self.total_steps:
            decay = 1.0
        elif step % self.every == 0:
            decay = 0.95**self.every * (step / self.total_steps) ** 3
        else:
            return
        current = self.model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(current[name], 1 - decay)
            current[name].copy_(slow)

    def state_dict(self) -> dict:
        return {k: v.cpu() for k, v in self.slow.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            self.slow[k].copy_(v)
