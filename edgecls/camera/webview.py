"""`edgecls camera --serve HOST:PORT`: the camera loop's own live web view, for robots without a screen.

    /             the page: annotated video and, beside it, that same frame's prediction, true label (replay),
                  decision, per-stage milliseconds and frame age; FPS, dropped frames, replay accuracy, a rolling
                  chart of processing time and frame age, and the final summary, kept once the loop has ended
    /frame.jpg    the newest frame (`?after=ID`: waits for a newer one), its numbers in the X-Frame-Stats header:
                  the page draws both in one go, so video and panel never describe different frames
    /stream.mjpg  the annotated video as MJPEG (multipart/x-mixed-replace: VLC, OpenCV, an <img>)
    /stats.json   the newest numbers, the recent history the chart draws, and the summary once the loop has ended

Python's ThreadingHTTPServer, no external server. The loop only hands over its newest frame and numbers
(`publish`); each frame is JPEG-encoded once, in a viewer's thread, at most `max_fps` and only while someone
watches, and every viewer is sent those same bytes with the numbers published with that frame. Connections are
capped (`max_connections`; more are answered 503), an idle or stalled one is dropped after `idle_timeout_s`, and the
listen backlog is 64.
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
.row{{display:flex;gap:16px;flex-wrap:wrap}} #video{{max-width:100%;border:1px solid #333;background:#000}}
table{{border-collapse:collapse}} td{{padding:2px 10px}} td.v{{text-align:right;font-variant-numeric:tabular-nums}}
canvas#chart{{background:#1b1b1b;border:1px solid #333}} h1{{font-size:18px}} .dim{{color:#999}}
.panel{{flex:0 1 440px}} .ok{{color:#5f5}} .bad{{color:#f66}} #ended{{display:none;border:1px solid #555;padding:8px}}
</style></head>
<body><h1>edgecls camera · {title}</h1><div class="row"><canvas id="video" width="640" height="480"></canvas>
<div class="panel"><table id="frame"></table><div id="ended"><b>the loop has ended</b><table id="summary"></table></div>
<p class="dim">processing ms (green) and frame age ms (orange), last 200 frames; spikes above the scale are marked in
red with their value</p>
<canvas id="chart" width="420" height="180"></canvas></div></div>
<script>
/* The video and the frame table come from one response (/frame.jpg: the JPEG, its numbers in X-Frame-Stats) and are
   drawn in the same task, so they always describe the same frame, at any rate. */
const rows=[["frame","frame"],["prediction","label"],["true label","truth"],["decision","decision"],
  ["rule","rule"],["FPS","fps"],["dropped frames","dropped"],["preprocess ms","preprocess_ms"],
  ["inference ms","inference_ms"],["postprocess ms","postprocess_ms"],["processing ms","processing_ms"],
  ["frame age ms","frame_age_ms"],["replay accuracy","accuracy"]];
const sums=[["frames","frames"],["FPS","fps"],["dropped","dropped"],["accuracy","accuracy"],
  ["processing p50 / p99 ms","processing"],["frame age p50 / p99 ms","frame_age"],["ended by","source_end"]];
function fmt(v){{return typeof v==="number"?(Number.isInteger(v)?v:v.toFixed(2)):(v??"—")}}
function table(id,spec,s){{document.getElementById(id).innerHTML=spec.filter(([n,k])=>k in s).map(([n,k])=>
  `<tr><td>${{n}}</td><td class="v" data-key="${{k}}">${{fmt(s[k])}}</td></tr>`).join("")}}
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
let last=-1,ended=false;
async function frames(){{while(!ended){{try{{const r=await fetch("/frame.jpg?after="+last);
    if(r.status===200){{const s=JSON.parse(r.headers.get("X-Frame-Stats")),
      bitmap=await createImageBitmap(await r.blob()),v=document.getElementById("video");
      if(v.width!==bitmap.width||v.height!==bitmap.height){{v.width=bitmap.width;v.height=bitmap.height;}}
      v.getContext("2d").drawImage(bitmap,0,0);table("frame",rows,s);last=+r.headers.get("X-Frame-Id");}}
    else if(r.status!==204)await new Promise(t=>setTimeout(t,500));}}
  catch(e){{await new Promise(t=>setTimeout(t,1000));}}}}}}
async function numbers(){{try{{const s=await (await fetch("/stats.json")).json();draw(s.history);
  if(s.summary){{ended=true;table("summary",sums,s.summary);document.getElementById("ended").style.display="block";
    return;}}}}catch(e){{}} setTimeout(numbers,500);}}
frames();numbers();
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
        self._jpeg, self._jpeg_id, self._jpeg_stats = b"", -1, {}
        self._encode_lock = threading.Lock()
        self._encoded_at = 0.0
        self.encodes = 0
        self._stats: dict = {}
        self._summary: dict | None = None
        self._page_seen_at = -1e9  # when a page last asked for the numbers
        self._summary_sent = threading.Event()
        self._history = {k: deque(maxlen=history) for k in ("processing_ms", "frame_age_ms")}
        self._lock = threading.Condition()
        self._closed = False
        view = self

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout_s  # every read and write on the connection: an idle or stalled viewer is dropped

            def log_message(self, *args) -> None:  # quiet: the camera loop owns the console
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path, _, query = self.path.partition("?")
                if path == "/":
                    self._send(PAGE.format(title=view.title).encode(), "text/html; charset=utf-8")
                elif path == "/stats.json":
                    self._send(json.dumps(view.stats(page=True)).encode(), "application/json")
                elif path == "/frame.jpg":
                    after = query.removeprefix("after=")
                    view._send_frame(self, int(after) if after.lstrip("-").isdigit() else -1)
                elif path == "/stream.mjpg":
                    view._stream(self)
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str, headers: dict | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
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

    def stats(self, page: bool = False) -> dict:
        """The newest numbers, the recent history, p50/p99 of processing over it, and the summary once finished."""
        with self._lock:
            history = {k: list(v) for k, v in self._history.items()}
            stats = {**self._stats, "history": history}
            if self._summary is not None:
                stats["summary"] = self._summary
                if page:
                    self._summary_sent.set()
            if page:
                self._page_seen_at = time.monotonic()
        if history["processing_ms"]:
            p50, p99 = np.percentile(history["processing_ms"], [50, 99])
            stats["processing_p50_p99"] = f"{p50:.2f} / {p99:.2f}"
        return stats

    def finish(self, summary: dict, linger_s: float = 3.0) -> None:
        """The loop has ended: pages show `summary` from now on. While a page is watching, wait (at most `linger_s`)
        until it has fetched the summary, so closing the server does not take it away first."""
        with self._lock:
            self._summary = summary
            watched = time.monotonic() - self._page_seen_at < 5.0
            self._lock.notify_all()
        if watched:
            self._summary_sent.wait(linger_s)

    def _send_frame(self, handler: BaseHTTPRequestHandler, after: int) -> None:
        """The newest frame once it is newer than `after` (waiting at most 2 s), with its own numbers; 204 when there
        is none, or the loop has ended."""
        with self._lock:
            self._lock.wait_for(
                lambda: self._frame_id != after or self._closed or self._summary is not None, timeout=2.0
            )
        jpeg, frame_id, stats = self._newest_jpeg()
        if not jpeg or frame_id == after or self._closed:
            handler.send_response(204)
            handler.end_headers()
            return
        handler._send(jpeg, "image/jpeg", {"X-Frame-Id": str(frame_id), "X-Frame-Stats": json.dumps(stats)})

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        seen = -1
        try:
            while not self._closed:
                with self._lock:
                    self._lock.wait_for(lambda last=seen: self._frame_id != last or self._closed, timeout=1.0)
                jpeg, seen, _ = self._newest_jpeg()
                if jpeg and not self._closed:
                    handler.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        + jpeg
                        + b"\r\n"
                    )
        except OSError:  # the viewer left, reset, or stalled past the timeout
            pass

    def _newest_jpeg(self) -> tuple[bytes, int, dict]:
        """The newest frame as JPEG, its number and the numbers published with it: encoded by the first viewer that
        asks (at most `max_fps` times a second, whoever asks), shared with the rest."""
        with self._encode_lock:
            if self._jpeg_id != self._frame_id:
                time.sleep(max(0.0, self._encoded_at + 1.0 / self.max_fps - time.monotonic()))
            with self._lock:
                frame, frame_id, stats = self._frame, self._frame_id, self._stats
            if frame is not None and self._jpeg_id != frame_id:
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
                self._jpeg, self._jpeg_id, self._jpeg_stats = (jpeg.tobytes() if ok else b""), frame_id, stats
                self._encoded_at = time.monotonic()
                self.encodes += 1
            return self._jpeg, self._jpeg_id, self._jpeg_stats

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
