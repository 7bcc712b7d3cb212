"""Ablation of `--recipe fast`: the full recipe, then each part switched off alone, on a shortened schedule.

Every variant is a separate `edgecls train` process (so each gets a fresh allocator and seed state), run one
after the other on the same machine; the table gives validation and test top-1 and wall time per run, and the
difference to the full recipe. The shipped run is the full recipe at full length; this measures what each
part buys at a length a CPU can afford several times over.

    python tools/ablate_fast_recipe.py --epochs 2 --data-dir ../shared/datasets
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _study import study_parser

VARIANTS: dict[str, list[str]] = {
    "full recipe": [],
    "no Lookahead": ["--no-lookahead"],
    "no label smoothing": ["--label-smoothing", "0"],
    "no whitening init": ["--no-whiten-init"],
    "no Dirac init": ["--model-arg", "dirac_init=false"],
    "random flip (no alternating)": ["--no-alternating-flip"],
    "no BN-shift lr ×64": ["--bias-lr-scale", "1"],
}


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--activation", default="gelu")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    epochs = args.epochs or 2
    out = Path(args.out) / "ablation_fast_recipe"
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name, extra in VARIANTS.items():
        if (args.only and name not in args.only) or name in results:
            continue
        run_dir = out / name.replace(" ", "_").replace("(", "").replace(")", "").replace("×", "x").replace("/", "-")
        command = [
            sys.executable,
            "-m",
            "edgecls",
            "train",
            "whitened_vgg",
            "--recipe",
            "fast",
            "--epochs",
            str(epochs),
            "--warmup-epochs",
            f"{0.23 * epochs:.3f}",
            "--model-arg",
            f"activation={args.activation}",
            "--out",
            str(run_dir),
            *(["--data-dir", args.data_dir] if args.data_dir else []),
            *extra,
        ]
        print(f"[{name}] {' '.join(command)}", flush=True)
        subprocess.run(command, check=True, stdout=sys.stdout, stderr=subprocess.STDOUT)
        summary = json.loads((run_dir / "summary.json").read_text())
        results[name] = {
            "command": " ".join(command),
            "val_top1": summary["best_val_acc"],
            "test_top1": summary["test_top1"],
            "train_wall_s": summary["train_wall_s"],
            "allocator": summary.get("allocator"),
        }
        results_path.write_text(json.dumps(results, indent=2))
    base = results.get("full recipe")
    lines = ["| variant | val top-1 | test top-1 | Δ test vs full | train wall |", "|---|---|---|---|---|"]
    for name, r in results.items():
        delta = f"{(r['test_top1'] - base['test_top1']) * 100:+.2f} pt" if base else "—"
        lines.append(
            f"| {name} | {r['val_top1']:.2%} | {r['test_top1']:.2%} | {delta} | {r['train_wall_s'] / 60:.1f} min |"
        )
    (out / "results.md").write_text(
        f"{epochs}-epoch schedule, activation {args.activation}\n\n" + "\n".join(lines) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
