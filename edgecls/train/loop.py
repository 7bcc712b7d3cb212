"""`train(cfg)`: the training loop, from dataset to best checkpoint, history, curves and test report.

Model selection uses a validation split carved from the training set; the test split is touched once,
by the best checkpoint, at the very end. That report is `edgecls eval`'s own (`evaluate.evaluate_model`, through
the runtime's Preprocessor): the one import here that reaches up a floor, so a run's test figure is the figure
`edgecls eval` prints for its checkpoint.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from edgecls.console import StepLog, console, progress_bar
from edgecls.data import load_dataset
from edgecls.data.imageset import ImageSet
from edgecls.data.loader import BatchLoader, rank_seed
from edgecls.data.split import train_val_split
from edgecls.data.transforms import Augment
from edgecls.errors import CheckpointError, ConfigError, TrainingDivergedError
from edgecls.fileio import atomic_write_json
from edgecls.imaging import ImageInput, Normalization, Policy
from edgecls.jsonrecord import to_json
from edgecls.plots import training_curves
from edgecls.train.allocator import allocator_in_use
from edgecls.train.checkpoint import load_checkpoint, load_matching, save_checkpoint
from edgecls.train.config import TrainConfig
from edgecls.train.distributed import init_distributed, shutdown_distributed
from edgecls.train.evaluate import evaluate_model
from edgecls.train.optim import Lookahead, Schedule, build_optimizer, freeze_all_but_last, param_groups
from edgecls.zoo import create_model

AUX_WEIGHT = 0.3  # auxiliary classifiers' share of the training loss (Szegedy et al. 2015)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(enabled: bool, device: torch.device) -> torch.dtype | None:
    """The mixed-precision type training computes in, or None for FP32.

    CUDA: bfloat16 where supported, else float16. CPU: bfloat16 only where the CPU computes it natively (AVX-512
    BF16 or AMX), where oneDNN's bf16 kernels trained whitened_vgg 1.7× faster than FP32 on a 2-core Zen 5; other
    CPUs stay in FP32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return None


def describe_hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.get_num_threads()} "
        "threads, "
        f"{allocator_in_use()} allocator"
    )


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (classes absent from the data get weight 0)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.divide(counts.sum() / num_classes, counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


class _Run:
    """State of one training run: model, optimizer, loaders and bookkeeping."""

    def __init__(self, cfg: TrainConfig, train_full: ImageSet, test_set: ImageSet | None, quiet: bool):
        self.cfg = cfg
        self.quiet = quiet
        self.device = pick_device(cfg.device)
        self.dist = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)

        self.split = {"seed": cfg.seed, "val_fraction": cfg.val_fraction, "subset": cfg.subset}
        self.train_set, self.val_set = train_val_split(train_full, self.split)
        self.test_set = test_set
        self.classes = self.train_set.classes
        self.normalization = Normalization.fit(self.train_set.images, cfg.normalization)
        self.model_args = {
            "num_classes": len(self.classes),
            "in_channels": self.train_set.in_channels,
            "input_size": self.train_set.input_size,
            **cfg.model_kwargs,
        }
        # channels_last: cuDNN's tensor-core kernels and oneDNN's CPU kernels both want NHWC (2.1x on a 2-core CPU)
        self.model = create_model(cfg.model, **self.model_args).to(self.device, memory_format=torch.channels_last)
        resuming = cfg.resume
        if resuming and not (self.out / "last.pt").is_file():
            raise CheckpointError(
                f"--resume: {self.out / 'last.pt'} not found, so there is nothing to continue; drop --resume "
                f"to start a new run, or pass the run's directory with --out"
            )
        if cfg.init_from and not resuming:
            self._init_from(cfg.init_from)
        elif (
            resuming and cfg.trainable_blocks is not None
        ):  # the optimizer state saved holds only the trainable tensors
            freeze_all_but_last(self.model, cfg.trainable_blocks)

        augment = Augment.from_config(cfg)
        self.train_loader = BatchLoader(
            self.train_set,
            cfg.batch_size,
            self.normalization,
            augment,
            shuffle=True,
            seed=cfg.seed,
            device=self.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.val_loader = BatchLoader(
            self.val_set,
            512,
            self.normalization,
            device=self.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            pad=False,
        )
        self.net = self.model
        if self.dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        weight = class_weights(self.train_set.labels, len(self.classes)).to(self.device) if cfg.class_weighted else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        if cfg.whiten_init and not resuming:
            self._init_whitening()
        self.optimizer = build_optimizer(param_groups(self.model, cfg), cfg)
        self.schedule = Schedule(self.optimizer, cfg, len(self.train_loader))
        self.lookahead = Lookahead(self.model, cfg.epochs * len(self.train_loader)) if cfg.lookahead else None
        self.amp_dtype = autocast_dtype(cfg.amp, self.device)
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=self.amp_dtype)) if self.amp_dtype else nullcontext
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best_val, self.bad_epochs, self.history = 1, -1.0, 0, []
        if resuming:
            self._resume(self.out / "last.pt")

    def _init_whitening(self, max_images: int = 5000) -> None:
        if not hasattr(self.model, "init_whitening"):
            raise ConfigError(
                f"whiten_init needs a model with a whitening stem (e.g. whitened_vgg); {self.cfg.model} has none: "
                "pass --no-whiten-init"
            )
        images = torch.from_numpy(np.array(self.train_set.images[:max_images])).permute(0, 3, 1, 2).to(self.device)
        self.model.init_whitening(self.normalization.apply(images))
        k = self.model.stem.kernel_size[0]
        self.log(f"whitening stem fitted to the {k}×{k} patches of {len(images):,} training images")

    def _init_from(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if ckpt["model"]["name"] != self.cfg.model:
            raise CheckpointError(f"--init-from {path} holds {ckpt['model']['name']}, not {self.cfg.model}")
        left_out = load_matching(self.model, ckpt["state_dict"])
        self.log(f"initialised from {path}; newly initialised: {', '.join(left_out) or 'nothing'}")
        if self.cfg.trainable_blocks is not None:
            n = freeze_all_but_last(self.model, self.cfg.trainable_blocks)
            self.log(f"froze all but the last {self.cfg.trainable_blocks} block(s): {n:,} trainable parameters")

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        changed = self.cfg.changes_on_resume(ckpt.get("config", {}))
        if changed:
            listed = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in changed.items())
            if not self.cfg.resume_override:
                raise ConfigError(
                    f"--resume with options that differ from the run in {path}: {listed}. These change the model, "
                    "the data or the schedule (e.g. more epochs stretch the learning-rate schedule mid-run). "
                    "Resume with the run's own options, or pass --resume-override to accept the change."
                )
            self.log(f"[yellow]--resume-override:[/] continuing {path} with changed options: {listed}")
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.lookahead:
            self.lookahead.load_state_dict(ckpt["lookahead"])
        self.start_epoch = ckpt["epoch"] + 1
        self.best_val, self.bad_epochs, self.history = ckpt["best_val"], ckpt["bad_epochs"], ckpt["history"]
        self.log(f"resumed from {path} after epoch {ckpt['epoch']}")

    def log(self, message: str) -> None:
        if self.dist.is_main and not self.quiet:
            console.print(message, soft_wrap=True)

    def payload(self, epoch: int, metrics: dict) -> dict:
        return {
            "model": {"name": self.cfg.model, "args": self.model_args},
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "classes": list(self.classes),
            "normalization": self.normalization.to_dict(),
            "input": to_json(ImageInput(self.train_set.input_size, self.train_set.in_channels)),
            "preprocess": Policy(self.normalization).geometry(),
            "dataset": self.cfg.dataset,
            "split": self.split,
            "metrics": metrics,
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "lookahead": self.lookahead.state_dict() if self.lookahead else {},
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "config": self.cfg.to_dict(),
        }

    def train_epoch(self, epoch: int, progress: Progress | None) -> dict:
        torch.manual_seed(rank_seed(self.cfg.seed * 1_000 + epoch, self.dist.rank))  # epoch and rank only: exact resume
        self.net.train()
        task = progress.add_task(f"epoch {epoch}/{self.cfg.epochs}", total=len(self.train_loader)) if progress else None
        # a bar draws nothing under nohup or CI: log lines there, so a 10-minute epoch is not silent
        steps = (
            StepLog(f"epoch {epoch}/{self.cfg.epochs}", len(self.train_loader))
            if progress and not console.is_terminal
            else None
        )
        loss_sum = correct = seen = 0.0
        data_time = 0.0
        start = time.perf_counter()
        batches = self.train_loader.epoch(epoch)
        step = (epoch - 1) * len(self.train_loader)
        freeze_stem_bias = self.cfg.whiten_init and epoch > self.cfg.whiten_bias_epochs
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x = x.contiguous(memory_format=torch.channels_last)
            data_time += time.perf_counter() - t0
            self.optimizer.zero_grad(set_to_none=True)
            logits, loss = self._forward_backward(x, y)
            if freeze_stem_bias:
                self.model.stem.bias.grad = None  # SGD skips it: the whitening stem is fixed from here on
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.after_step()
            step += 1
            if self.lookahead:
                self.lookahead.after_step(step)
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if progress:
                progress.advance(task)
            if steps:
                steps.advance()
        if steps:
            steps.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if progress:
            progress.remove_task(task)
        loss_sum, correct, seen = self.dist.all_sum([float(loss_sum), float(correct), float(seen)], self.device)
        return {
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "images_per_s": seen / elapsed,
            "data_fraction": data_time / elapsed,
            "epoch_s": elapsed,
            "samples_seen": int(seen),
        }

    def _loss(self, out, y: torch.Tensor) -> torch.Tensor:
        """The criterion on the logits; a model that also returns auxiliary classifiers' logits in training (GoogLeNet's
        `aux_logits`) adds theirs weighted by 0.3, as Szegedy et al. trained it."""
        if isinstance(out, tuple):
            main, *auxiliary = out
            return self.criterion(main, y) + AUX_WEIGHT * sum(self.criterion(a, y) for a in auxiliary)
        return self.criterion(out, y)

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the batch's mean loss, in micro-batches when configured (their gradients add up to the
        batch's)."""
        size = self.cfg.micro_batch_size or len(y)
        logits, losses = [], []
        for start in range(0, len(y), size):
            xs, ys = x[start : start + size], y[start : start + size]
            last = start + size >= len(y)
            sync = self.net.no_sync if self.dist.enabled and not last else nullcontext
            with sync(), self.autocast():
                out = self.net(xs)
                loss = self._loss(out, ys)
                self.scaler.scale(loss * (len(ys) / len(y))).backward()
            logits.append((out[0] if isinstance(out, tuple) else out).detach())
            losses.append(loss.detach() * len(ys))
        return torch.cat(logits), sum(losses) / len(y)

    @torch.no_grad()
    def validate(self) -> dict:
        self.net.eval()
        loss_sum = correct = seen = 0.0
        criterion = nn.CrossEntropyLoss(reduction="sum")
        for x, y in self.val_loader.epoch():
            logits = self.model(x.contiguous(memory_format=torch.channels_last))
            loss_sum += float(criterion(logits, y))
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
        loss_sum, correct, seen = self.dist.all_sum([loss_sum, correct, seen], self.device)
        return {"val_loss": loss_sum / seen, "val_acc": correct / seen}


def train(
    cfg: TrainConfig, train_set: ImageSet | None = None, test_set: ImageSet | None = None, quiet: bool = False
) -> dict:
    """Train `cfg.model`; returns a summary with the best checkpoint's path and its test report."""
    if train_set is None:
        train_set = load_dataset(
            cfg.dataset, "train", cfg.data_dir, cfg.image_size, skip_bad_images=cfg.skip_bad_images
        )
    if test_set is None:
        test_set = load_dataset(cfg.dataset, "test", cfg.data_dir, cfg.image_size, skip_bad_images=cfg.skip_bad_images)
    run = _Run(cfg, train_set, test_set, quiet)
    out = run.out
    if run.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    compute = str(run.amp_dtype or torch.float32).removeprefix("torch.")
    run.log(
        f"[bold]{cfg.model}[/] on {run.train_set.name} ({len(run.train_set)} train / {len(run.val_set)} val), "
        f"device {run.device}, {compute} compute, world size {run.dist.world_size}"
    )
    show_progress = run.dist.is_main and not quiet
    progress = progress_bar(disable=not show_progress)
    with progress:
        for epoch in range(run.start_epoch, cfg.epochs + 1):
            stats = run.train_epoch(epoch, progress if show_progress else None)
            stats.update(run.validate())
            if not (math.isfinite(stats["train_loss"]) and math.isfinite(stats["val_loss"])):
                kept = f"{out / 'last.pt'} (epoch {epoch - 1})" if epoch > 1 else "no checkpoint (first epoch)"
                raise TrainingDivergedError(
                    f"epoch {epoch}: the loss became {stats['train_loss']} (validation {stats['val_loss']}); the "
                    f"weights are no longer numbers, so nothing of this epoch was saved. Kept: {kept}. Lower --lr "
                    f"(now {cfg.lr}) or add --warmup-epochs, then start again."
                )
            run.schedule.after_epoch(stats["val_loss"])
            stats.update(epoch=epoch, lr=run.optimizer.param_groups[0]["lr"])
            run.history.append(stats)
            improved = stats["val_acc"] > run.best_val
            if improved:
                run.best_val, run.bad_epochs = stats["val_acc"], 0
            else:
                run.bad_epochs += 1
            run.log(
                f"epoch {epoch:3d}  loss {stats['train_loss']:.4f}  train {stats['train_acc']:.2%}  "
                f"val {stats['val_acc']:.2%} (loss {stats['val_loss']:.4f})  lr {stats['lr']:.4g}  "
                f"{stats['images_per_s']:.0f} img/s  data {stats['data_fraction']:.0%}"
                + ("  *best*" if improved else "")
            )
            if run.dist.is_main:
                metrics = {"val_acc": stats["val_acc"], "val_loss": stats["val_loss"], "epoch": epoch}
                payload = run.payload(epoch, metrics)
                if improved:
                    save_checkpoint(out / "best.pt", payload)
                save_checkpoint(out / "last.pt", payload)
                atomic_write_json(out / "history.json", run.history)
            run.dist.barrier()
            if cfg.early_stopping and run.bad_epochs >= cfg.early_stopping:
                run.log(f"early stop: no validation improvement for {cfg.early_stopping} epochs")
                break
    summary = {
        "out": str(out),
        "best_val_acc": run.best_val,
        "epochs_run": len(run.history),
        "history": run.history,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": describe_hardware(run.device),
        "world_size": run.dist.world_size,
        "compute": compute,
        "allocator": allocator_in_use(),
        "train_wall_s": sum(h["epoch_s"] for h in run.history),
        "config": cfg.to_dict(),
    }
    if run.dist.is_main:
        training_curves(
            run.history, out / "curves.png", f"{cfg.model} on {run.train_set.name}, {describe_hardware(run.device)}"
        )
        best = load_checkpoint(out / "best.pt")
        run.model.load_state_dict(best["state_dict"])
        report = evaluate_model(
            run.model, test_set, run.normalization, device=str(run.device), out_json=out / "test_report.json"
        )
        best["metrics"]["test_top1"] = report["top1"]
        save_checkpoint(out / "best.pt", best)
        summary.update(test_top1=report["top1"], test_top5=report["top5"], checkpoint=str(out / "best.pt"))
        run.log(
            f"test top-1 {report['top1']:.2%}  top-5 {report['top5']:.2%}  (best val {run.best_val:.2%}) → "
            f"{out / 'best.pt'}"
        )
        atomic_write_json(out / "summary.json", {k: v for k, v in summary.items() if k != "history"})
    run.dist.barrier()
    shutdown_distributed(run.dist)
    return summary
