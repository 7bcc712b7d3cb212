"""Soak the camera loop's web view: memory over time and processing latency, with and without viewers.

    python tools/soak_camera.py BUNDLE --dataset cifar10 --data-dir DIR --minutes 10 --viewers 20 --baseline-minutes 3

Two runs of `edgecls camera BUNDLE --replay-test-set DATASET --fps FPS --headless --serve 127.0.0.1:PORT`, one with
no viewer and one with VIEWERS browsers' worth of clients (each reads /stream.mjpg without pause and polls
/stats.json twice a second, as the page does). The camera process's resident memory is sampled every 10 s;
its own summary gives processing p50/p99. Writes OUT.json and OUT.png (memory over time, both runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load_test import free_ports, tree_rss_mb  # noqa: E402


def viewer(url: str, stop: threading.Event, received: list[int], slot: int) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/stream.mjpg", timeout=10) as stream:
                last_stats = 0.0
                while not stop.is_set():
                    received[slot] += len(stream.read(65536))
                    if time.monotonic() - last_stats > 0.5:
                        urllib.request.urlopen(f"{url}/stats.json", timeout=10).read()
                        last_stats = time.monotonic()
        except OSError:
            time.sleep(0.5)


def soak(args, minutes: float, viewers: int, label: str) -> dict:
    port = free_ports(1)[0]
    frames = int(minutes * 60 * args.fps)
    summary_path = Path(f"{args.out}.{label}.summary.json")
    cmd = [
        sys.executable,
        "-m",
        "edgecls",
        "camera",
        args.bundle,
        "--replay-test-set",
        args.dataset,
        "--fps",
        str(args.fps),
        "--max-frames",
        str(frames),
        "--headless",
        "--serve",
        f"127.0.0.1:{port}",
        "--json",
        str(summary_path),
    ]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    stop, received = threading.Event(), [0] * viewers
    threads = [threading.Thread(target=viewer, args=(url, stop, received, i), daemon=True) for i in range(viewers)]
    for t in threads:
        t.start()
    started, samples = time.monotonic(), []
    while proc.poll() is None:
        samples.append((round(time.monotonic() - started, 1), round(tree_rss_mb(proc.pid), 1)))
        print(
            f"{label}: {samples[-1][0]:.0f} s, RSS {samples[-1][1]:.1f} MB, {sum(received) / 2**20:.0f} MB sent to "
            "viewers",
            flush=True,
        )
        time.sleep(10)
    stop.set()
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"camera exited {proc.returncode}:\n{output[-3000:]}")
    summary = json.loads(summary_path.read_text())
    work = summary["latency"]["processing_ms"]
    steady = [rss for t, rss in samples if t >= 30] or [samples[-1][1]]
    return {
        "label": label,
        "viewers": viewers,
        "minutes": minutes,
        "frames": summary["frames"],
        "dropped": summary["dropped"],
        "fps": summary["fps"],
        "processing_p50_ms": work["p50"],
        "processing_p99_ms": work["p99"],
        "rss_mb_at_30s": steady[0],
        "rss_mb_end": steady[-1],
        "rss_mb_max": max(steady),
        "mb_sent_to_viewers": round(sum(received) / 2**20, 1),
        "rss_samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--baseline-minutes", type=float, default=3.0)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument(
        "--fps", type=float, default=15.0, help="replay rate (10,000 test images last 11 min at 15 fps)"
    )
    parser.add_argument("--out", default="soak_camera")
    args = parser.parse_args()
    runs = [
        soak(args, args.baseline_minutes, 0, "no viewers"),
        soak(args, args.minutes, args.viewers, f"{args.viewers} viewers"),
    ]
    base, loaded = runs
    result = {
        "command": " ".join(sys.argv),
        "runs": runs,
        "p99_ratio": loaded["processing_p99_ms"] / base["processing_p99_ms"],
        "rss_growth_mb": loaded["rss_mb_end"] - loaded["rss_mb_at_30s"],
    }
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    for run in runs:
        print(
            f"{run['label']:>12}: {run['frames']} frames in {run['minutes']:g} min, {run['dropped']} dropped, "
            f"processing p50 {run['processing_p50_ms']:.3f} ms p99 {run['processing_p99_ms']:.3f} ms, "
            f"RSS {run['rss_mb_at_30s']:.1f} MB at 30 s → {run['rss_mb_end']:.1f} MB at the end "
            f"(max {run['rss_mb_max']:.1f}), {run['mb_sent_to_viewers']} MB sent"
        )
    print(
        f"p99 with viewers / without: {result['p99_ratio']:.2f}×; RSS growth with viewers: "
        f"{result['rss_growth_mb']:+.1f} MB"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for run in runs:
        t, rss = zip(*run["rss_samples"], strict=True)
        ax.plot([x / 60 for x in t], rss, label=f"{run['label']} (p99 {run['processing_p99_ms']:.2f} ms)")
    ax.set(
        xlabel="minutes",
        ylabel="camera process RSS, MB",
        title=f"edgecls camera soak: {Path(args.bundle).name}, {args.dataset} replay at {args.fps:g} fps, web view",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=110)
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
