"""The child process of `tensorrt_qdq.ModelOptChild`: NVIDIA ModelOpt's own command line, imported before its job.

It imports ModelOpt at once (5 s on a 2-core CPU, torch among its imports) while the parent is still exporting the
FP32 graph, then reads one job from stdin, a JSON object {"argv": ModelOpt's command-line arguments, "onnx_path",
"input": the input's name, "shape": [C, H, W], "exclude_nodes", "calibration_batch"}, and runs ModelOpt's `main` on
it. End of input instead of a job: nothing is wanted, exit.

Calibration in batches: without --calibration_shapes ModelOpt calibrates one image per ONNX Runtime call (1,024
calls; in batches of 32 its CPU time on mobilenet_mod went from 9.5 to 6.4 s). Min/max ranges merge across batches
exactly: the graph is byte-identical from batches of 1, 32, 128 and 1,024 images (measured). But ModelOpt also reads
the calibration batch as the deployment batch: a Gemm or MatMul with one row there is a GEMV, which it leaves
unquantized for TensorRT. A camera runs batch 1, so the GEMVs are found at batch 1 by ModelOpt's own rule
(`find_nodes_from_matmul_to_exclude` with batch-1 shapes) and excluded by name, as the one-image-at-a-time run
excludes them.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from modelopt.onnx.quantization.__main__ import main as modelopt_main
    from modelopt.onnx.quantization.graph_utils import find_nodes_from_matmul_to_exclude

    line = sys.stdin.readline()
    if not line:
        return
    job = json.loads(line)
    argv, excluded = list(job["argv"]), list(job["exclude_nodes"])
    if job["calibration_batch"] > 1:
        item = "x".join(str(d) for d in job["shape"])
        excluded += find_nodes_from_matmul_to_exclude(job["onnx_path"], calibration_shapes=f"{job['input']}:1x{item}")
        argv += ["--calibration_shapes", f"{job['input']}:{job['calibration_batch']}x{item}"]
    if excluded:
        argv += ["--nodes_to_exclude", *excluded]
    sys.argv = ["modelopt.onnx.quantization", *argv]
    modelopt_main()


if __name__ == "__main__":
    main()
