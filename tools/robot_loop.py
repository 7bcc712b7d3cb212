"""A robot control loop around `Classifier`: camera in, decision out, at a fixed control rate.

    python tools/robot_loop.py exports/mobilenet_mod --source 0 --stop-on truck --min-confidence 0.8 --vote 3/5

The camera thread always holds the newest frame; the control loop classifies it, votes, decides, and sleeps
to its period. The robot stops when at least N of the last M frames saw the class (`--vote N/M`), so one
misread frame does not make it stop and go. Replace `act()` with your robot's API (ROS publisher, motor
driver, ...).
"""

from __future__ import annotations

import argparse
import sys
import time

from edgecls.camera.smoothing import NofM
from edgecls.camera.sources import LatestFrameGrabber, open_source
from edgecls.errors import EdgeclsError, InputError
from edgecls.runtime import Classifier


def act(command: str, label: str, confidence: float) -> None:
    print(f"{time.strftime('%H:%M:%S')} {command:5s} ({label} {confidence:.0%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--source", default="0")
    parser.add_argument("--stop-on", default="truck", help="class that makes the robot stop")
    parser.add_argument("--min-confidence", type=float, default=0.8)
    parser.add_argument("--hz", type=float, default=20.0, help="control rate")
    parser.add_argument("--vote", default="3/5", help="stop when N of the last M frames saw the class (N/M)")
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()

    try:
        n, m = (int(v) for v in args.vote.split("/"))
        votes = NofM(n, m)
        clf = Classifier.load(args.bundle)
        grabber = LatestFrameGrabber(open_source(args.source)).start()
    except ValueError:
        sys.exit(f"error: --vote must look like 3/5, got {args.vote!r}")
    except EdgeclsError as exc:  # no bundle, no camera: say which and stop before the loop starts
        sys.exit(f"error: {exc}")
    print(clf.describe())
    period, step, last = 1.0 / args.hz, 0, None
    try:
        while args.max_steps is None or step < args.max_steps:
            started = time.perf_counter()
            frame = grabber.next_frame()
            if frame is None:
                break
            try:
                pred = clf.predict(frame.image)
            except InputError as exc:  # a bad frame is skipped, never fatal to the control loop
                print(f"skipped frame {frame.index}: {exc}")
                continue
            seen = pred.label == args.stop_on and pred.confidence >= args.min_confidence
            command = "stop" if votes.update(seen) else "go"
            if command != last:
                act(command, pred.label, pred.confidence)
                last = command
            step += 1
            time.sleep(max(0.0, period - (time.perf_counter() - started)))
    except (KeyboardInterrupt, EdgeclsError) as exc:
        print(f"stopping: {exc or 'interrupted'}")
    finally:
        grabber.stop()
        act("stop", "shutdown", 1.0)


if __name__ == "__main__":
    main()
