"""`edgecls camera --serve HOST:PORT`: the camera loop's own live web view, for robots without a screen.

    /             the page: annotated video, live per-stage milliseconds, frame age, FPS, dropped frames,
                  replay accuracy, and a rolling chart of processing time and frame age
    /stream.mjpg  the annotated video as MJPEG (multipart/x-mixed-replace: any browser, VLC, OpenCV)
    /stats.json   the live numbers and the recent history the chart draws

Python's ThreadingHTTPServer, no external server. The loop only hands over its newest frame and numbers
(`publish`); each frame is JPEG-encoded once, in a viewer's thread, at most `max_fps` and only while someone
watches, and every viewer is sent those same bytes. Connections are capped (`max_connections`; more are
answered 503), an idle or stalled one is dropped after `idle_timeout_s`, and the listen backlog is 64.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler

import cv2
import numpy as np

from edgecls.httpserver import BoundedHTTPServer

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>edgecls · {title}</title>
<style>body{{font:14px system-ui,sans-serif;background:#111;color:#eee;margin:16px}}
.row{{display:flex;gap:16px;flex-wrap:wrap}} img{{max-width:100%;border:1px solid #333}}
table{{border-collapse:collapse}} td{{padding:2px 10px}} td.v{{text-align:right;font-variant-numeric:tabular-nums}}
canvas{{background:#1b1b1b;border:1px solid #333}} h1{{font-size:18px}} .dim{{color:#999}}
.panel{{flex:0 1 440px}}</style></head>
<body><h1>edgecls camera · {title}</h1><div class="row"><img src="/stream.mjpg" alt="annotated video">
<div class="panel"><table id="stats"></table>
<p class="dim">processing ms (green) and frame age ms (orange), last 200 frames; spikes above the scale are marked in
red with their value</p>
<canvas id="chart" width="420" height="180"></canvas></div></div>
<script>
const rows = [["prediction","label"],["FPS","fps"],["dropped frames","dropped"],["frames","frames"],
  ["preprocess ms","preprocess_ms"],["inference ms","inference_ms"],["postprocess ms","postprocess_ms"],
  ["processing ms","processing_ms"],["processing p50 / p99 ms (last 200)","processing_p50_p99"],
  ["frame age ms","frame_age_ms"],
  ["replay accuracy","accuracy"]];
function fmt(v){{return typeof v==="number"?(Number.isInteger(v)?v:v.toFixed(2)):(v??"—")}}
function draw(h){{const c=document.getElementById("chart"),g=c.getContext("2d");g.clearRect(0,0,c.width,c.height);
  const all=h.processing_ms.concat(h.frame_age_ms).sort((a,b)=>a-b);
  /* spikes must not flatten the trace */
  const top=Math.max(1,(all.length?all[Math.floor(0.95*(all.length-1))]:1)*1.5);
  g.fillStyle="#888";g.fillText(top.toFixed(1)+" ms",4,12);g.fillText("0",4,c.height-4);
  for(const [k,col] of [["processing_ms","#5f5"],["frame_age_ms","#fa4"]]){{g.strokeStyle=col;g.beginPath();
    h[k].forEach((v,i)=>{{const x=i*c.width/Math.max(1,h[k].length-1),y=c.height-Math.min(v,top)/top*c.height;
      i?g.lineTo(x,y):g.moveTo(x,y)}});g.stroke();
    g.fillStyle="#f44";h[k].forEach((v,i)=>{{if(v>top){{const x=i*c.width/Math.max(1,h[k].length-1);
      g.fillRect(x-1,0,3,6);g.fillText(v.toFixed(0),Math.min(x+3,c.width-24),16);}}}});}}}}
async function tick(){{try{{const s=await (await fetch("/stats.json")).json();
  document.getElementById("stats").innerHTML=
    rows.map(([n,k])=>`<tr><td>${{n}}</td><td class="v">${{fmt(s[k])}}</td></tr>`).join("");
  draw(s.history);}}catch(e){{}} setTimeout(tick,500);}}
tick();
</script></body></html>"""


class WebView:
    def __init__(
        self,
        host: str,
        port: int,
        title: str = "",
        max_fps: float = 15.0,
        history: int = 200,
        max_connections: int = 32,
        idle_timeout_s: float = 10.0,
    ):
        self.title, self.max_fps = title, max_fps
        self._frame: np.ndarray | None = None
        self._frame_id = 0
        self._jpeg, self._jpeg_id = b"", -1
        self._encode_lock = threading.Lock()
        self.encodes = 0
        self._stats: dict = {}
        self._shown_stats: dict = {}  # the numbers of the frame video viewers were last sent
        self._streams = 0
        self._history = {k: deque(maxlen=history) for k in ("processing_ms", "frame_age_ms")}
        self._lock = threading.Condition()
        self._closed = False
        view = self

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout_s  # every read and write on the connection: an idle or stalled viewer is dropped

            def log_message(self, *args) -> None:  # quiet: the camera loop owns the console
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/":
                    self._send(PAGE.format(title=view.title).encode(), "text/html; charset=utf-8")
                elif self.path == "/stats.json":
                    self._send(json.dumps(view.stats()).encode(), "application/json")
                elif self.path == "/stream.mjpg":
                    view._stream(self)
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.server = BoundedHTTPServer((host, port), Handler, max_connections)
        self.address = f"http://{host}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="edgecls-webview", daemon=True)
        self.thread.start()

    def publish(self, frame: np.ndarray, stats: dict) -> None:
        """The loop's newest annotated frame and numbers (cheap: no copy, no encoding here)."""
        with self._lock:
            self._frame, self._frame_id = frame, self._frame_id + 1
            self._stats = stats
            for key, values in self._history.items():
                if key in stats:
                    values.append(round(stats[key], 3))
            self._lock.notify_all()

    def stats(self) -> dict:
        """The numbers of the frame the video last showed (the newest while no video viewer is connected), the recent
        history, and
        p50/p99 of processing over that history."""
        with self._lock:
            history = {k: list(v) for k, v in self._history.items()}
            shown = self._shown_stats if self._streams else self._stats
            stats = {**shown, "history": history}
        if history["processing_ms"]:
            p50, p99 = np.percentile(history["processing_ms"], [50, 99])
            stats["processing_p50_p99"] = f"{p50:.2f} / {p99:.2f}"
        return stats

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        seen, period = -1, 1.0 / self.max_fps
        with self._lock:
            self._streams += 1
        try:
            while not self._closed:
                with self._lock:
                    self._lock.wait_for(lambda last=seen: self._frame_id != last or self._closed, timeout=1.0)
                started = time.perf_counter()
                jpeg, seen = self._newest_jpeg()
                if jpeg and not self._closed:
                    handler.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        + jpeg
                        + b"\r\n"
                    )
                time.sleep(max(0.0, period - (time.perf_counter() - started)))
        except OSError:  # the viewer left, reset, or stalled past the timeout
            pass
        finally:
            with self._lock:
                self._streams -= 1

    def _newest_jpeg(self) -> tuple[bytes, int]:
        """The newest frame as JPEG and its number: encoded by the first viewer that asks, shared with the rest."""
        with self._encode_lock:
            with self._lock:
                frame, frame_id, stats = self._frame, self._frame_id, self._stats
            if frame is not None and self._jpeg_id != frame_id:
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
                self._jpeg, self._jpeg_id = (jpeg.tobytes() if ok else b""), frame_id
                with self._lock:  # the panel then shows the label drawn on the video, not a newer frame's
                    self._shown_stats = stats
                self.encodes += 1
            return self._jpeg, self._jpeg_id

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
