"""The README's picture of the live page: a replay with `--serve`, watched by headless Chromium until the loop has
ended, so the shot shows the last frame, its panel and the summary the page keeps.

    python tools/screenshot_live_page.py exports/mobilenet_mod --data-dir ../shared/datasets

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver) and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from edgecls.camera.loop import run_camera
from edgecls.camera.options import CameraOptions
from edgecls.camera.webview import WebView
from edgecls.cli.deploy import replay_set
from edgecls.runtime import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--out", default="docs/camera_webview.png")
    args = parser.parse_args()

    views = []
    opened = WebView.__init__

    def remember(self, *a, **k):
        opened(self, *a, **k)
        views.append(self)

    WebView.__init__ = remember
    clf = Classifier.load(args.bundle)
    options = CameraOptions(
        replay_test_set="cifar10", data_dir=args.data_dir, headless=True, fps=args.fps, max_frames=args.frames,
        serve="127.0.0.1:0",
    )  # fmt: skip
    loop = threading.Thread(target=run_camera, args=(clf, options, replay_set(options, clf.bundle)))
    loop.start()
    while not views:
        time.sleep(0.05)
    browser = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1180,700"):
        browser.add_argument(flag)
    driver = webdriver.Chrome(options=browser, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(views[0].address)
        loop.join()
        time.sleep(1.0)  # the page has drawn the summary; the server is gone, the page keeps it
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
