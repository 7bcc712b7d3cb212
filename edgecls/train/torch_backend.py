"""PyTorch backend: the bundle's source weights (`model.pt`) in eager PyTorch, the baseline for bench. It lives with
training (it loads a training checkpoint) and registers itself with the runtime's backends when imported."""

from __future__ import annotations

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BackendUnavailableError, BundleError
from edgecls.runtime.backends import register_backend
from edgecls.runtime.backends.base import Backend, BackendInfo

# One thread on a CPU unless told otherwise, like ONNX Runtime's backend. `tools/bench_threads.py --backend torch` on
# mobilenet_mod, 2-core EPYC: PyTorch's default (2 threads, OpenMP spinning) 6.39 ms paced p50, 19.4 ms p99, 20.1 ms
# of CPU per frame paced every 33 ms; one thread 6.65 ms, 9.1 ms, 6.6 ms (hot p50 4.81 → 5.46 ms).
DEFAULT_CPU_THREADS = 1


@register_backend
class TorchBackend(Backend):
    name = "torch"

    def __init__(self, bundle: Bundle, precision: str = "fp32", device: str = "cpu", threads: int | None = None):
        super().__init__(bundle, precision, device)
        try:
            import torch

            from edgecls.train.checkpoint import load_checkpoint, model_from_checkpoint
        except ImportError as exc:
            raise BackendUnavailableError("the torch backend needs PyTorch: pip install 'edgecls[train]'") from exc
        if precision not in ("fp32", "fp16"):
            raise BackendUnavailableError(f"the torch backend runs fp32 or fp16, not {precision}")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("torch has no CUDA device here; use device='cpu'")
        entry = bundle.find("pytorch", "fp32")
        if entry is None:
            raise BundleError(
                f"bundle {bundle.root} has no model.pt: its source ({bundle.manifest.source or '?'}) is not "
                "an edgecls checkpoint, so there is no PyTorch baseline to run"
            )
        self.entry = entry
        self.source_graph = entry.name
        self.torch = torch
        threads = threads or (DEFAULT_CPU_THREADS if device == "cpu" else None)
        if threads:  # process-wide in PyTorch: the last backend created sets it
            torch.set_num_threads(threads)
        model = model_from_checkpoint(load_checkpoint(bundle.root / entry.name, data=bundle.read_verified(entry)))
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval()

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, None]:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch).to(self.device, self.dtype)
            return self.model(x).float().cpu().numpy(), None

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def describe(self) -> BackendInfo:
        return BackendInfo(
            self.name,
            self.device,
            self.precision,
            self.entry.name,
            (f"torch {self.torch.__version__}",),
            detail="eager PyTorch",
            threads=self.torch.get_num_threads() if self.device == "cpu" else None,
        )
