"""moto in server mode, started as a child process (the session fixture and bench/provision.py).

AWS IoT certificate ids are computed as AWS does (the SHA-256 of the DER; moto's default hashes
the PEM text for backwards compatibility). moto reads that option only from its in-process
config, so the server is started from a small launcher.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from simulator.broker import free_port

_LAUNCHER = """
import sys
from moto.core.config import default_user_config
default_user_config["iot"] = {"use_valid_cert": True}
from moto.server import main
main(sys.argv[1:])
"""


class MotoStartError(RuntimeError):
    """The moto server exited or did not answer in time."""


def start_moto(timeout_s: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """A running moto server on a free loopback port and its ``http://127.0.0.1:PORT``; the
    caller terminates the process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # moto is not our code: under `make test` coverage would trace it too (its
    # `patch = subprocess` reaches every Python child through this variable), slowing every call.
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1.0):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise MotoStartError(f"moto server did not start on port {port}") from None
            time.sleep(0.1)
