"""The DIMSE listener's tests' peers: a private network namespace, the listener as a process,
dcmtk's storescp as the destination, and storescu / echoscu as the PACS.

Every process runs in one network namespace of the test's own with only loopback up (``unshare
--net`` holds it, ``nsenter`` joins it), as the Orthanc round trip does: nothing can reach or be
reached from outside. Without the right to make one (not root), they run on this namespace's
127.0.0.1 (``make test`` has already put the whole suite in such a namespace).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app_helpers import ROOT

STUB_APP = Path(__file__).resolve().parent / "stub_app.py"
LISTENER_AET, DEST_AET, PACS_AET = "DIFFUGTS", "DEST", "PACS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NetNS:
    """A network namespace with loopback only; ``prefix`` runs a command inside it."""

    def __init__(self) -> None:
        self.prefix: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.holder = None
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nsenter"):
            holder = subprocess.Popen(
                ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo ready && exec sleep 3600"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            if holder.stdout.readline().strip() == "ready":
                self.holder, self.prefix = holder, ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
            else:
                holder.kill()
                holder.wait()

    def popen(self, command: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(self.prefix + command, **kwargs)
        self.processes.append(process)
        return process

    def run(self, command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix + command, capture_output=True, text=True, timeout=timeout, check=False)

    def close(self) -> None:
        for process in [*self.processes, *([self.holder] if self.holder else [])]:
            if process.poll() is None:
                process.kill()
            process.wait()


class ListenerProcess:
    """``python -m tools.dicom_listener`` with a fast quiet period and retry delay, logging to a file."""

    def __init__(self, net: NetNS, work: Path, dest_port: int, *extra: str, app: list[str] | None = None, env: dict | None = None) -> None:
        self.port, self.work, self.log_path = free_port(), work, work.parent / f"{work.name}-listener.log"
        app = [sys.executable, str(STUB_APP)] if app is None else app
        command = [
            sys.executable,
            "-m",
            "tools.dicom_listener",
            "--port",
            str(self.port),
            "--ae-title",
            LISTENER_AET,
            "--send-to",
            f"{DEST_AET}@127.0.0.1:{dest_port}",
            "--work",
            str(work),
            "--quiet-seconds",
            "2",
            "--retry-delay",
            "0.2",
        ]
        command += (["--app-command", shlex.join(app)] if app else []) + list(extra)
        self.log_file = open(self.log_path, "w")
        self.process = net.popen(command, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT, env=env)
        self.wait_for("listening on")

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 120) -> str:
        """Wait until ``pattern`` (a regular expression) is in the log ``count`` times."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.log)) < count:
            if self.process.poll() is not None:
                raise AssertionError(f"the listener exited ({self.process.returncode}) before {pattern!r}:\n{self.log[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} x{count} in the listener's log within {timeout} s:\n{self.log[-3000:]}")
            time.sleep(0.2)
        return self.log

    def stop(self, timeout: float = 90) -> int:
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=timeout)
        self.log_file.close()
        return status


def storescp(net: NetNS, folder: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """dcmtk's Storage SCP as the destination, answering once it takes associations."""
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    process = net.popen(["storescp", "-aet", DEST_AET, "-od", str(folder), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(100):
        if echoscu(net, port, called=DEST_AET).returncode == 0:
            return process, port
        time.sleep(0.1)
    raise AssertionError("storescp did not start")


def storescu(net: NetNS, port: int, files, calling: str = PACS_AET, *options: str) -> subprocess.CompletedProcess:
    return net.run(["storescu", *options, "-aet", calling, "-aec", LISTENER_AET, "127.0.0.1", str(port), *map(str, files)])


def echoscu(net: NetNS, port: int, calling: str = PACS_AET, called: str = LISTENER_AET) -> subprocess.CompletedProcess:
    return net.run(["echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port)], timeout=30)
