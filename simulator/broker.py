"""A real Mosquitto broker on loopback ports, owned by a context manager.

Two listeners, like AWS IoT Core seen from a device:

* a plain listener that accepts anonymous clients (tests, the simulator's cloud side);
* with a ``Pki``, a mutual-TLS listener (TLS 1.2+, client certificate required and verified
  against the test CA, certificate CN used as the MQTT username), as IoT Core does on 8883;
  given ``acl`` (the text of a Mosquitto ``acl_file``, e.g. ``simulator.acl.policy_acl`` of
  the device policy), that listener enforces it, as IoT Core enforces the policy.

Mosquitto 2 started as root drops to user ``mosquitto`` *before* it opens its log file and
loads certificates, so everything it reads or writes lives in a run directory owned by that
user, reachable through directories that user may traverse. The caller's PKI files are copied
there; the originals keep their permissions.
"""

from __future__ import annotations

__all__ = [
    "BINARY_ENV",
    "BrokerError",
    "Mosquitto",
    "ensure_mosquitto",
    "find_mosquitto",
    "free_port",
]

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from simulator.certs import Pki

HOST = "127.0.0.1"
_INSTALL_HINT = "install it: apt-get install -y mosquitto"
BINARY_ENV = "EDGE_APP_MOSQUITTO"
"""When set, the path of the mosquitto binary: nothing else is searched nor installed (the tests'
unit tier points it at a missing file, so a test there cannot start a broker)."""
_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
_RUN_USER = "mosquitto"
_LOG_TAIL_CHARS = 4000
_POLL_S = 0.05


class BrokerError(RuntimeError):
    """Mosquitto is missing, failed to start, or was used in the wrong state."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_mosquitto() -> str:
    """Path of the ``mosquitto`` binary; ``BrokerError`` saying how to install it if absent.

    ``$EDGE_APP_MOSQUITTO`` if set; else looks on PATH and in the sbin directories, which are
    often not on a user's PATH.
    """
    chosen = os.environ.get(BINARY_ENV)
    if chosen:
        if Path(chosen).is_file() and os.access(chosen, os.X_OK):
            return chosen
        raise BrokerError(
            f"{BINARY_ENV}={chosen} is not an executable file: point it at mosquitto, or unset it"
        )
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BrokerError(f"the mosquitto broker binary was not found; {_INSTALL_HINT}")


def ensure_mosquitto() -> str:
    """Like ``find_mosquitto``, but installs the Debian package when it can.

    Installs only as root on Debian with ``apt-get`` (running ``apt-get update`` and retrying
    when the first install fails); otherwise raises the same ``BrokerError`` as
    ``find_mosquitto``. Installs nothing when ``$EDGE_APP_MOSQUITTO`` names the binary.
    """
    try:
        return find_mosquitto()
    except BrokerError:
        if os.environ.get(BINARY_ENV):
            raise
        apt = shutil.which("apt-get")
        if os.geteuid() != 0 or apt is None or not Path("/etc/debian_version").exists():
            raise
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "mosquitto"]
    try:
        try:
            subprocess.run(install, check=True, env=env, capture_output=True, timeout=600)
        except subprocess.CalledProcessError:
            # A fresh container has empty package lists; refresh them once and retry.
            subprocess.run([apt, "update"], check=True, env=env, capture_output=True, timeout=600)
            subprocess.run(install, check=True, env=env, capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        raise BrokerError(
            f"apt-get could not install mosquitto: {stderr}; {_INSTALL_HINT}"
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"apt-get could not install mosquitto: {exc}; {_INSTALL_HINT}") from exc
    return find_mosquitto()


class Mosquitto:
    """One Mosquitto process with a plain and (given a ``Pki``) a mutual-TLS listener.

    ``workdir`` belongs to the caller and keeps mosquitto's log and stderr; the config and the
    certificate copies live in a run directory the broker's user owns (inside ``workdir`` when
    that user can reach it, else a private temp dir removed on ``stop``). Ports are chosen at
    construction (``None`` picks a free one) and kept across ``restart()``, so clients can
    reconnect to the same address. ``sys_interval``: seconds between ``$SYS`` updates
    (Mosquitto's default: 10). Use as a context manager, or call ``start``/``stop``.
    """

    def __init__(
        self,
        workdir: Path,
        pki: Pki | None = None,
        *,
        port: int | None = None,
        tls_port: int | None = None,
        acl: str | None = None,
        sys_interval: int | None = None,
    ) -> None:
        if acl is not None and pki is None:
            raise BrokerError("acl applies to the TLS listener: pass pki=make_pki(...) as well")
        self._workdir = workdir
        self._pki = pki
        self._acl = acl
        if sys_interval is not None and sys_interval < 1:
            raise BrokerError(f"sys_interval must be >= 1 second, got {sys_interval}")
        self._sys_interval = sys_interval
        self._port = port if port is not None else free_port()
        self._tls_port: int | None = None
        if pki is not None:
            self._tls_port = tls_port if tls_port is not None else _other_free_port(self._port)
        elif tls_port is not None:
            raise BrokerError("tls_port given without a Pki: pass pki=make_pki(...) as well")
        self._exe = find_mosquitto()
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._run_dir: Path | None = None
        self._run_dir_is_temp = False

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The loopback address both listeners bind to."""
        return HOST

    @property
    def port(self) -> int:
        """Port of the plain, anonymous listener."""
        return self._port

    @property
    def tls_port(self) -> int:
        """Port of the mutual-TLS listener; ``BrokerError`` when constructed without a Pki."""
        if self._tls_port is None:
            raise BrokerError("this broker has no TLS listener: construct it with a Pki")
        return self._tls_port

    @property
    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """Mosquitto's log: in the run dir while running; after stop, workdir's copy of all runs."""
        if self._run_dir is not None:
            return self._run_dir / "mosquitto.log"
        return self._workdir / "mosquitto.log"

    def log_text(self) -> str:
        """Mosquitto's log plus anything it wrote to stderr, for error messages and debugging."""
        parts = []
        for path in (self.log_path, self._workdir / "mosquitto.stderr"):
            try:
                text = path.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                parts.append(text)
        return "\n".join(parts)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and wait (up to ``timeout`` seconds) until its listeners accept TCP.

        Raises ``BrokerError`` with mosquitto's log when it exits or does not become ready.
        """
        if self.is_running:
            raise BrokerError("mosquitto is already running: call stop() first")
        self._workdir.mkdir(parents=True, exist_ok=True)
        config = self._prepare_run_dir()
        self._stderr = (self._workdir / "mosquitto.stderr").open("ab")
        try:
            self._process = subprocess.Popen(
                [self._exe, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=self._stderr,
                stderr=self._stderr,
                cwd=self._run_dir,
            )
        except OSError as exc:
            self._close_stderr()
            raise BrokerError(f"could not run {self._exe}: {exc}") from exc
        try:
            self._wait_ready(timeout)
        except BrokerError:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop mosquitto: SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._close_stderr()
        self._release_run_dir()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same ports (clients see a broker outage)."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _wait_ready(self, timeout: float) -> None:
        ports = [self._port] if self._tls_port is None else [self._port, self._tls_port]
        deadline = time.monotonic() + timeout
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise BrokerError(f"mosquitto exited during startup (exit {code}):\n{self._tail()}")
            # "running" is logged once every listener is bound; checking it as well as TCP
            # keeps us from mistaking some other process on a reused port for our broker.
            if " running" in self._read_log() and all(_accepts(HOST, p) for p in ports):
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"mosquitto did not accept connections on {HOST}:{ports} within "
                    f"{timeout} s:\n{self._tail()}"
                )
            time.sleep(_POLL_S)

    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _tail(self) -> str:
        return self.log_text()[-_LOG_TAIL_CHARS:] or "(mosquitto wrote no log)"

    def _prepare_run_dir(self) -> Path:
        """Create the run directory with config and certificate copies; return the config."""
        owner = _drop_user()
        if owner is not None and not _traversable(self._workdir, owner):
            # The workdir is unreachable for the broker's user (pytest's tmp dirs are 0700),
            # so use a private directory under the system temp dir, which everyone may enter.
            run_dir = Path(tempfile.mkdtemp(prefix="edge-app-mosquitto-"))
            self._run_dir_is_temp = True
        else:
            run_dir = self._workdir / "mosquitto-run"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(mode=0o700)
            self._run_dir_is_temp = False
        self._run_dir = run_dir

        lines = [
            "# generated by simulator.broker; rewritten on every start",
            "per_listener_settings true",
            "persistence false",
            f"log_dest file {run_dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # Generous limits: tests measure our own flow control, not the broker's.
            "max_inflight_messages 1000",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",
        ]
        if self._sys_interval is not None:
            lines.append(f"sys_interval {self._sys_interval}")
        if owner is None and os.geteuid() == 0:
            # Root without a mosquitto user: mosquitto would fall back to "nobody", which
            # cannot read the run dir; staying root is the lesser evil in a test container.
            lines.append("user root")
        lines += ["", f"listener {self._port} {HOST}", "allow_anonymous true"]
        if self._pki is not None and self._tls_port is not None:
            copies = {
                "ca.crt": self._pki.ca,
                "server.crt": self._pki.server_cert,
                "server.key": self._pki.server_key,
            }
            for name, source in copies.items():
                target = run_dir / name
                shutil.copyfile(source, target)
                target.chmod(0o600)
            lines += [
                "",
                f"listener {self._tls_port} {HOST}",
                "allow_anonymous false",
                f"cafile {run_dir / 'ca.crt'}",
                f"certfile {run_dir / 'server.crt'}",
                f"keyfile {run_dir / 'server.key'}",
                "require_certificate true",
                "use_identity_as_username true",
                "tls_version tlsv1.2",
            ]
            if self._acl is not None:
                (run_dir / "acl").write_text(self._acl, encoding="utf-8")
                (run_dir / "acl").chmod(0o600)
                lines.append(f"acl_file {run_dir / 'acl'}")
        config = run_dir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if owner is not None:
            for path in (run_dir, *run_dir.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        return config

    def _release_run_dir(self) -> None:
        run_dir, self._run_dir = self._run_dir, None
        if run_dir is None:
            return
        # Keep the log with the caller's files; the run dir is the broker user's.
        log = run_dir / "mosquitto.log"
        if log.exists():
            # Appended, so the history of every start/restart stays readable after stop().
            with (self._workdir / "mosquitto.log").open("ab") as kept:
                kept.write(log.read_bytes())
        if self._run_dir_is_temp:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _other_free_port(taken: int) -> int:
    while True:
        port = free_port()
        if port != taken:
            return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _drop_user() -> pwd.struct_passwd | None:
    """The user mosquitto switches to, when it will switch (we are root and it exists)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_RUN_USER)
    except KeyError:
        return None


def _traversable(directory: Path, user: pwd.struct_passwd) -> bool:
    """True when ``user`` may enter ``directory`` and all its ancestors (execute permission)."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for path in (directory.resolve(), *directory.resolve().parents):
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_uid == user.pw_uid:
            allowed = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & 0o010)
        else:
            allowed = bool(st.st_mode & 0o001)
        if not allowed:
            return False
    return True
