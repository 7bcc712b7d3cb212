"""The README's Jetson recipe, run as a Jetson user runs it, on every commit.

`.ci/run` builds the environment: Debian's python3-opencv (OpenCV with GStreamer, built against the system numpy 1.x,
as JetPack's is) and GStreamer's base and good plugins from apt, `/usr/bin/python3 -m venv --system-site-packages`,
`pip install '.[jetson]'` exactly as the README says, then ONNX Runtime's CPU build standing in for NVIDIA's Jetson
wheel, installed under a constraint that keeps the system numpy. It names that venv's python in
$EDGECLS_JETSON_PYTHON; without it these tests skip. Each command runs in that venv, on a bundle exported here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

PYTHON = os.environ.get("EDGECLS_JETSON_PYTHON")
pytestmark = pytest.mark.skipif(
    not PYTHON, reason="no Jetson-shaped venv (EDGECLS_JETSON_PYTHON, made by .ci/run where apt-get works)"
)
TEST_PIPELINE = (
    "videotestsrc {extra}! video/x-raw,width=640,height=480,framerate=30/1 ! videoconvert ! "
    "video/x-raw,format=BGR ! appsink"
)


def edgecls(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [PYTHON, "-m", "edgecls.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd="/"
    )


def test_the_system_opencv_and_numpy_stay_what_the_distribution_built():
    probe = (
        "import json, cv2, numpy, importlib.util; print(json.dumps({'numpy': numpy.__version__, "
        "'numpy_at': numpy.__file__, 'cv2_at': cv2.__file__, 'gstreamer': [l for l in "
        "cv2.getBuildInformation().splitlines() if 'GStreamer' in l][0], "
        "'torch': importlib.util.find_spec('torch') is not None}))"
    )
    found = json.loads(subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert int(found["numpy"].split(".")[0]) < 2 and found["numpy_at"].startswith("/usr/lib/python3/")
    assert found["cv2_at"].startswith("/usr/lib/python3/") and "YES" in found["gstreamer"]
    assert not found["torch"]  # the runtime install carries no torch


def test_info_and_doctor_run_on_the_jetson_install(bundle_dir):
    info = edgecls("info", str(bundle_dir))
    assert info.returncode == 0, info.stderr
    doctor = edgecls("doctor", str(bundle_dir), "--iterations", "3")
    assert doctor.returncode == 0 and "OK:" in doctor.stdout, doctor.stdout + doctor.stderr
    assert "GStreamer yes" in doctor.stdout


def test_first_run_report_runs_on_the_jetson_install(bundle_dir, tmp_path):
    report = tmp_path / "first-run.json"
    result = edgecls("doctor", str(bundle_dir), "--first-run", "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert checks["environment"]["status"] in ("PASS", "WARN") and checks["engines"]["status"] == "SKIP"


def test_a_csi_camera_without_argus_fails_fast_naming_the_element(bundle_dir):
    started = time.perf_counter()
    result = edgecls("camera", str(bundle_dir), "--source", "csi://0", "--headless", "--max-frames", "5", timeout=60)
    assert result.returncode != 0 and time.perf_counter() - started < 20
    assert "nvarguscamerasrc" in result.stderr and "Traceback" not in result.stderr


def test_a_gstreamer_pipeline_is_classified(bundle_dir, tmp_path):
    summary = tmp_path / "camera.json"
    result = edgecls(
        "camera", str(bundle_dir), "--source", TEST_PIPELINE.format(extra=""), "--headless", "--max-frames", "30",
        "--json", str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(summary.read_text())["frames"] == 30


def test_a_pipeline_that_ends_ends_the_loop_with_its_summary(bundle_dir, tmp_path):
    summary = tmp_path / "camera.json"
    result = edgecls(
        "camera", str(bundle_dir), "--source", TEST_PIPELINE.format(extra="num-buffers=90 "), "--headless",
        "--json", str(summary), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(summary.read_text())
    assert 0 < report["frames"] <= 90 and report["reconnects"] == 0 and report["source_end"] == "source ended"
    assert "source ended" in result.stdout + result.stderr
    assert not summary.with_suffix(".png").exists() and "no PNG: matplotlib" in result.stdout + result.stderr


RECEIVE_RTP = """
import sys, threading, time, cv2
from edgecls.camera.outputs import parse_output, rtp_receiver
frames = []
def count():  # opening blocks until the first packet arrives
    capture = cv2.VideoCapture(rtp_receiver(parse_output(sys.argv[1]), "appsink sync=false"), cv2.CAP_GSTREAMER)
    while True:
        ok, image = capture.read()
        if not ok:
            return
        frames.append(image.shape)
threading.Thread(target=count, daemon=True).start()
time.sleep(1.0)
print("listening", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and len(frames) < int(sys.argv[3]):
    time.sleep(0.05)
print(len(frames), frames[0] if frames else None, flush=True)
"""


def test_an_rtp_output_is_received_by_a_gstreamer_pipeline(bundle_dir, tmp_path):
    """H.264 over RTP on localhost: edgecls sends 90 annotated frames, a GStreamer pipeline (udpsrc → rtph264depay →
    avdec_h264 → appsink) on this machine receives them and counts."""
    probe = "from edgecls.camera.video_uri import missing_gstreamer_elements as m; print(m(['x264enc', 'avdec_h264']))"
    missing = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True).stdout.strip()
    if missing != "[]":
        pytest.skip(f"GStreamer lacks {missing} (apt-get install gstreamer1.0-plugins-ugly gstreamer1.0-libav)")
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    uri = f"rtp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    receiver = subprocess.Popen(
        [PYTHON, "-c", RECEIVE_RTP, uri, "60", "90"], stdout=subprocess.PIPE, text=True, env=env, cwd="/"
    )
    assert receiver.stdout.readline().strip() == "listening"
    summary = tmp_path / "camera.json"
    sent = edgecls(
        "camera", str(bundle_dir), "--source", TEST_PIPELINE.format(extra=""), "--headless", "--max-frames", "90",
        "--output", uri, "--json", str(summary), timeout=120,
    )  # fmt: skip
    received, _ = receiver.communicate(timeout=90)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"streaming {uri}" in sent.stderr and "rtph264depay ! avdec_h264" in sent.stderr  # how to receive it
    count, shape = received.split(" ", 1)
    frames = json.loads(summary.read_text())["frames"]
    assert frames == 90 and int(count) >= 0.9 * frames and shape.strip() == "(480, 640, 3)", received


def test_a_test_set_pickled_under_numpy_2_replays_under_the_system_numpy_1(bundle_dir, cifar_root, tmp_path):
    """numpy 2.0 pickled arrays as numpy._core.multiarray (the CIFAR-10 copy beside this project was written so);
    JetPack's numpy 1.x has no numpy._core, and must read such a batch as it reads the official ones."""
    import pickle
    import shutil

    from edgecls.data.safe_pickle import safe_load

    root = tmp_path / "numpy2"
    shutil.copytree(cifar_root, root)
    batch = root / "cifar-10-batches-py" / "test_batch"
    written = pickle.dumps(safe_load(batch.read_bytes()), protocol=2)  # GLOBAL opcodes name modules as text
    batch.write_bytes(written.replace(b"cnumpy.core.multiarray\n", b"cnumpy._core.multiarray\n"))
    assert b"numpy._core.multiarray" in batch.read_bytes()
    summary = tmp_path / "camera.json"
    result = edgecls(
        "camera", str(bundle_dir), "--replay-test-set", "cifar10", "--data-dir", str(root), "--headless",
        "--max-frames", "20", "--json", str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(summary.read_text())["labelled_frames"] == 20
