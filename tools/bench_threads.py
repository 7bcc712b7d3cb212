"""Which thread setting serves batch 1 best on this CPU: threads × spin-waiting, hot and paced.

    python tools/bench_threads.py exports/mobilenet_mod --precision int8 --iterations 300
    python tools/bench_threads.py exports/mobilenet_mod --backend torch      # PyTorch's thread count (model.pt)

Each configuration classifies the same 640×480 frame through `Classifier.predict`, back to back and then
once every 33 ms, in one run; the table gives p50/p99 and the ratio of each p50 to ONNX Runtime's own
default (all cores, spinning on; PyTorch's own default thread count), over `--rounds` interleaved rounds. The
runtime's defaults (`DEFAULT_CPU_THREADS` of both backends) come from here.
"""

from __future__ import annotations

import argparse

import numpy as np

from edgecls.bench import time_frames
from edgecls.bundle import Bundle
from edgecls.camera.stats import summarize
from edgecls.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgecls.runtime.classifier import Classifier
from edgecls.runtime.host import host_info


def _onnxruntime_configs(bundle: Bundle, precision: str) -> dict:
    configs = [(0, True), (1, False), (1, True), (2, True), (2, False)]
    return {
        c: (
            Classifier(bundle, OnnxRuntimeBackend(bundle, precision, "cpu", threads=c[0], spin_wait=c[1]), "bench"),
            None,
        )
        for c in configs
    }


def _torch_configs(bundle: Bundle) -> dict:
    """PyTorch's thread count is process-wide: each block sets its own before it is timed. Its OpenMP threads spin
    (GOMP's default wait policy) whenever there is more than one."""
    import torch

    from edgecls.train.torch_backend import TorchBackend

    default = torch.get_num_threads()
    clf = Classifier(bundle, TorchBackend(bundle, "fp32", "cpu"), "bench")
    return {(n, (n or default) > 1): (clf, n or default) for n in (0, 1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime")
    parser.add_argument("--precision", default="int8", help="onnxruntime's graph (torch runs model.pt in FP32)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--pace-ms", type=float, default=33.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    bundle = Bundle.open(args.bundle)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    classifiers = _torch_configs(bundle) if args.backend == "torch" else _onnxruntime_configs(bundle, args.precision)
    samples: dict = {c: {"hot": [], "paced": []} for c in classifiers}
    cpu: dict = {c: [] for c in classifiers}
    for _ in range(args.rounds):  # interleaved rounds, so drift in the machine's state hits every configuration alike
        for config, (clf, torch_threads) in classifiers.items():
            if torch_threads:
                import torch

                torch.set_num_threads(torch_threads)
            samples[config]["hot"].append(time_frames(clf, frame, args.iterations, 30)["end_to_end_ms"])
            paced = time_frames(clf, frame, args.iterations, 5, args.pace_ms)
            samples[config]["paced"].append(paced["end_to_end_ms"])
            cpu[config].append(paced["cpu_ms_per_call"])
    results = {c: {mode: summarize(np.concatenate(runs)) for mode, runs in s.items()} for c, s in samples.items()}
    base = results[next(iter(results))]
    host = host_info()
    graph = "model.pt fp32" if args.backend == "torch" else args.precision
    print(
        f"{args.bundle} {args.backend} {graph}, end to end from a 640×480 frame, {host['cpu']}, "
        f"{host['logical_cores']} cores, {args.backend} {host['versions'].get(args.backend, '?')}"
    )
    print(
        "| threads | spinning | hot p50 | hot p99 | paced p50 | paced p99 | paced CPU ms/frame (median of rounds) | "
        "hot p50 vs default | paced p50 vs default |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (threads, spinning), r in results.items():
        print(
            f"| {threads or 'default (0)'} | {'on' if spinning else 'off'} | {r['hot']['p50']:.3f} | "
            f"{r['hot']['p99']:.3f} | {r['paced']['p50']:.3f} | {r['paced']['p99']:.3f} | "
            f"{np.median(cpu[(threads, spinning)]):.2f} | {base['hot']['p50'] / r['hot']['p50']:.2f}× | "
            f"{base['paced']['p50'] / r['paced']['p50']:.2f}× |"
        )


if __name__ == "__main__":
    main()
