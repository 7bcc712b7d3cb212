"""The tritonserver process behind `edgecls serve`: the binary and Python-backend stubs PyTriton ships (the one
pip-installable Triton), started on a model repository, watched and stopped.

Why not PyTriton's `Triton` class: it waits two minutes for a server that already exited (a model that failed to
load), and it starts the server in the caller's process group, where a terminal's Ctrl-C reached Triton twice.
Here the server runs in a process group of its own, dies with its parent (PR_SET_PDEATHSIG), exits are seen at once,
and its log goes to this process's output.

Clients may infer and ask for health, metadata, configs and statistics, nothing more. Triton's own options close the
rest on both protocols: model-control mode `none` (every model in the repository loads at start, and no client can
load or unload one), and its restricted-API options put model-repository, shared-memory, trace and logging behind a
header whose value is a random secret that leaves this process never: any gRPC peer (with --host 0.0.0.0, the
network) could otherwise unload the served model, register shared memory or rewrite the log settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from edgecls.errors import ServerDiedError

SHM_BYTES, SHM_GROWTH_BYTES = 4 << 20, 1 << 20  # the Python backend's stub memory: PyTriton's sizes (defaults 64 MB)
STOP_TIMEOUT_S = 30
RESTRICTED = "model-repository,shared-memory,trace,logging"  # Triton's names, the same for HTTP and gRPC


def server_environment() -> dict[str, str]:
    """The server's environment: this interpreter's shared libpython and PyTriton's libraries on the library path,
    and this environment's `python` first on PATH, from which the stub's embedded interpreter takes its prefix (and
    so this environment's numpy)."""
    from pytriton.utils.distribution import get_libs_path

    env = dict(os.environ)
    libs = [sysconfig.get_config_var("LIBDIR"), str(get_libs_path()), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")])
    return env


def install_server(workdir: Path) -> Path:
    """tritonserver with the stub built for this Python's minor version where the Python backend looks for it."""
    from pytriton.utils.distribution import get_root_module_path, get_stub_path

    server = workdir / "tritonserver"
    shutil.copytree(
        get_root_module_path() / "tritonserver", server, ignore=shutil.ignore_patterns("python_backend_stubs")
    )
    shutil.copy(
        get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}"),
        server / "backends" / "python" / "triton_python_backend_stub",
    )
    return server


def die_with_parent_hook():
    """The child's `preexec_fn`: PR_SET_PDEATHSIG, so Triton dies with its parent. libc is found and loaded here, in the
    parent: the child runs between fork and exec in a copy of a process that may have CUDA and ONNX Runtime threads,
    where `find_library` (which runs ldconfig) or dlopen could deadlock on a lock another thread held."""
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


SHM = Path("/dev/shm")


def shm_prefix(pid: int) -> str:
    return f"edgecls{pid}_"


def remove_shared_memory(pid: int | None = None) -> list[Path]:
    """Remove the Python backend's shared-memory regions of serve process `pid`, or (None) those of every serve process
    that no longer runs (one killed with SIGKILL cleans nothing; /dev/shm is RAM until reboot). Returns what went."""
    removed = []
    for path in SHM.glob("edgecls*_*") if SHM.is_dir() else []:
        owner = path.name.removeprefix("edgecls").split("_", 1)[0]
        if not owner.isdigit() or (pid is not None and int(owner) != pid):
            continue
        if pid is None and Path(f"/proc/{owner}").exists():
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _stat(pid: int | str) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (state, parent pid, ...); [] for a process that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    """Whether process `pid` runs: a stub killed is a zombie until Triton reaps it, which it may never do."""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


class TritonServer:
    """One tritonserver process: `start`, `wait_ready`, `wait` (returns when it exits), `stop`."""

    def __init__(
        self, repository: Path, workdir: Path, http_port: int, grpc: tuple[str, int], metrics: tuple[str, int]
    ):
        self.repository, self.workdir, self.http_port = repository, workdir, http_port
        self.grpc, self.metrics = grpc, metrics
        self.admin_key = secrets.token_hex(16)  # never printed, never sent: the restricted APIs stay closed
        self.process: subprocess.Popen | None = None

    def command(self, server: Path) -> list[str]:
        return [
            str(server / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={server / 'backends'}",
            "--model-control-mode=none",
            f"--grpc-restricted-protocol={RESTRICTED}:edgecls-admin={self.admin_key}",
            f"--http-restricted-api={RESTRICTED}:edgecls-admin={self.admin_key}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.grpc[0]}",
            f"--grpc-port={self.grpc[1]}",
            "--allow-metrics=true",
            "--allow-cpu-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={self.metrics[0]}",
            f"--metrics-port={self.metrics[1]}",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix(os.getpid())}",
            f"--backend-config=python,shm-default-byte-size={SHM_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
            # Triton's default 256 MB pinned and 64 MB CUDA pools serve GPU tensors, which these models never pass
            # (frames and answers travel as CPU tensors through shared memory): on an 8 GB Jetson that is RAM lost.
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
        ]

    def start(self) -> None:
        remove_shared_memory()  # left by serve processes that were killed outright
        self.process = subprocess.Popen(
            self.command(install_server(self.workdir)),
            env=server_environment(),
            cwd=self.workdir,
            process_group=0,  # a terminal's Ctrl-C reaches `edgecls serve` alone, which then stops Triton once
            preexec_fn=die_with_parent_hook(),
        )

    def wait_ready(self, timeout_s: float = 300) -> None:
        """Return once every model answers; raise ServerDiedError if the server exits first or takes too long."""
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        while self.process.poll() is None:
            try:
                if urllib.request.urlopen(url, timeout=1).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerDiedError(
                    f"Triton Inference Server was not ready after {timeout_s:.0f} s: its log above says what it "
                    "is waiting for"
                )
            time.sleep(0.1)
        raise ServerDiedError(
            f"Triton Inference Server exited with code {self.process.returncode} while starting: its log above says "
            "why (a model that failed to load shows its error there)"
        )

    def stubs(self) -> dict[int, str]:
        """pid → model of each Python-backend stub this Triton runs, from /proc: a child whose command is the stub,
        given the model's `<repository>/<model>/1/model.py`."""
        found = {}
        for proc in Path("/proc").glob("[0-9]*"):
            fields = _stat(proc.name)
            if len(fields) < 2 or fields[1] != str(self.process.pid):
                continue
            try:
                command = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command[0].endswith(b"triton_python_backend_stub") and len(command) > 1:
                found[int(proc.name)] = Path(command[1].decode(errors="replace")).parent.parent.name
        return found

    def wait(self, poll_s: float = 0.5) -> list[str]:
        """Block until Triton exits ([]) or a model instance's stub that ran when this was called exits (the models
        that lost one). Triton does not restart a dead stub and keeps saying the model is ready while every request
        to it fails, so a dead stub must end the server here, where a supervisor sees it."""
        running = self.stubs()
        while True:
            try:
                self.process.wait(timeout=poll_s)
                return []
            except subprocess.TimeoutExpired:
                pass
            lost = sorted({model for pid, model in running.items() if not _alive(pid)})
            if lost:
                return lost

    def stop(self) -> None:
        """SIGINT (Triton's clean stop: in-flight requests finish, models unload), then SIGKILL if it hangs; then the
        stubs' shared memory is removed, whatever way Triton ended (a dead stub leaves 1-2 GB there otherwise)."""
        try:
            if self.process is None or self.process.poll() is not None:
                return
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        finally:
            remove_shared_memory(os.getpid())
