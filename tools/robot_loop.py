"""A robot control loop around `Classifier`: camera in, decision out, at a fixed control rate.

    python tools/robot_loop.py exports/mobilenet_mod --source 0 --stop-on truck --vote 3/5

The camera thread always holds the newest frame; the control loop classifies it, votes, decides, and sleeps
to its period. The robot stops when at least N of the last M frames saw the class (`--vote N/M`,
`edgecls.runtime.decision.Decider`), so one misread frame does not make it stop and go; a frame the bundle calls
unknown votes "unknown", never the class. Replace `act()` with your robot's API (ROS publisher, motor driver, ...).
"""

from __future__ import annotations

import argparse
import sys
import time

from edgecls.camera.sources import LatestFrameGrabber, open_source
from edgecls.errors import EdgeclsError, InputError
from edgecls.runtime import Classifier
from edgecls.runtime.decision import Decider


def act(command: str, label: str, confidence: float) -> None:
    print(f"{time.strftime('%H:%M:%S')} {command:5s} ({label} {confidence:.0%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--source", default="0")
    parser.add_argument("--stop-on", default="truck", help="class that makes the robot stop")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        help="a frame below this calibrated confidence votes unknown (the bundle's own unknown threshold always does)",
    )
    parser.add_argument("--hz", type=float, default=20.0, help="control rate")
    parser.add_argument("--vote", default="3/5", help="stop when N of the last M frames saw the class (N/M)")
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()

    try:
        decider = Decider.parse(args.vote, args.min_confidence)
        clf = Classifier.load(args.bundle)
        grabber = LatestFrameGrabber(open_source(args.source)).start()
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
            command = "stop" if decider.update(pred).label == args.stop_on else "go"
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
