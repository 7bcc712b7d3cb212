"""Optimizers and learning-rate schedules by name."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgecls.train.config import TrainConfig


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Schedule:
    """One object that knows when to step: cosine with linear warm-up per iteration, the others per epoch."""

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
        elif self.kind == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
        elif self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.gamma, patience=3)
        else:
            self.scheduler = None

    def after_step(self) -> None:
        if self.kind == "cosine":
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
    for block in blocks[len(blocks) - max(1, trainable_blocks):]:
        for p in block.parameters():
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
