"""A throw-away PKI for tests and demos, made with the ``openssl`` command line tool.

One CA signs a server certificate for ``localhost`` and one client certificate per thing name,
like AWS IoT Core's device certificates. A *rogue* client certificate is self-signed with the
same kind of subject, so a broker that accepts it is not checking the chain.

Files (all in one directory, private keys mode 0600)::

    ca.crt ca.key               the test CA (EC P-256, short validity)
    server.crt server.key       CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (+ server_names)
    client-{thing}.crt/.key     signed by the CA, CN={thing}
    rogue.crt rogue.key         self-signed, CN=rogue-{thing}; no CA signed it

``make_pki`` is idempotent: existing files are kept as long as they are complete and valid for
at least another day, so a demo directory can be reused across runs.
"""

from __future__ import annotations

__all__ = ["DEFAULT_THING", "Pki", "PkiError", "make_pki"]

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_THING = "edge-test"
VALIDITY_DAYS = 30
# A certificate that expires within this many seconds is regenerated rather than reused.
_MIN_REMAINING_S = 86_400
_THING_RE = re.compile(r"[A-Za-z0-9_:-]{1,128}")
_DNS_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_CURVE = "prime256v1"


class PkiError(RuntimeError):
    """Generating or checking the test PKI failed (openssl missing or refusing)."""


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of a generated PKI. The files belong to the directory given to ``make_pki``."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def make_pki(
    directory: Path, thing: str = DEFAULT_THING, *, server_names: tuple[str, ...] = ()
) -> Pki:
    """Create (or reuse) a CA, server, client and rogue certificate in ``directory``.

    ``thing`` becomes the client certificate's CN, which Mosquitto (``use_identity_as_username``)
    and AWS IoT policies see as the device identity. ``server_names``: DNS names the server
    certificate holds besides ``localhost`` (a broker reached as ``mosquitto`` in a compose
    network); a reused server certificate without them is made again. The caller owns
    ``directory``; it is created if missing. Raises ``PkiError`` when openssl is missing or
    fails, with its stderr.
    """
    if not _THING_RE.fullmatch(thing):
        raise PkiError(f"invalid thing name {thing!r}: use 1-128 characters from A-Z a-z 0-9 _ : -")
    bad = [name for name in server_names if not _DNS_RE.fullmatch(name)]
    if bad:
        raise PkiError(f"invalid DNS name(s) {bad}: use letters, digits, '-' and '.'")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PkiError("openssl not found on PATH: install it (apt-get install -y openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / f"client-{thing}.crt",
        client_key=directory / f"client-{thing}.key",
        rogue_cert=directory / "rogue.crt",
        rogue_key=directory / "rogue.key",
    )
    ca_key = directory / "ca.key"
    tool = _OpenSsl(openssl, directory)

    fresh_ca = not tool.usable(pki.ca, ca_key)
    if fresh_ca:
        tool.self_signed(
            pki.ca,
            ca_key,
            "/CN=edge-app test CA",
            [
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
                "subjectKeyIdentifier=hash",
            ],
        )
    # Certificates signed by a replaced CA are useless, so a new CA forces new leaves.
    sans = ",".join(["DNS:localhost", *(f"DNS:{n}" for n in server_names), "IP:127.0.0.1"])
    if (
        fresh_ca
        or not tool.usable(pki.server_cert, pki.server_key)
        or not tool.names_all(pki.server_cert, server_names)
    ):
        tool.signed(
            pki.server_cert,
            pki.server_key,
            "/CN=localhost",
            ca=(pki.ca, ca_key),
            extensions=[
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,keyAgreement",
                "extendedKeyUsage=serverAuth",
                f"subjectAltName={sans}",
            ],
        )
    if fresh_ca or not tool.usable(pki.client_cert, pki.client_key):
        tool.signed(
            pki.client_cert,
            pki.client_key,
            f"/CN={thing}",
            ca=(pki.ca, ca_key),
            extensions=[
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,keyAgreement",
                "extendedKeyUsage=clientAuth",
            ],
        )
    if not tool.usable(pki.rogue_cert, pki.rogue_key):
        tool.self_signed(
            pki.rogue_cert,
            pki.rogue_key,
            f"/CN=rogue-{thing}",
            ["basicConstraints=critical,CA:FALSE", "extendedKeyUsage=clientAuth"],
        )
    return pki


class _OpenSsl:
    """Thin runner for the few openssl invocations ``make_pki`` needs."""

    def __init__(self, executable: str, directory: Path) -> None:
        self._exe = executable
        self._dir = directory

    def run(self, *args: str) -> str:
        try:
            done = subprocess.run(
                [self._exe, *args],
                check=True,
                capture_output=True,
                text=True,
                cwd=self._dir,
                timeout=60,
            )
        except subprocess.CalledProcessError as exc:
            raise PkiError(
                f"openssl {args[0]} failed (exit {exc.returncode}): {exc.stderr.strip()}"
            ) from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PkiError(f"could not run openssl {args[0]}: {exc}") from exc
        return done.stdout

    def usable(self, cert: Path, key: Path) -> bool:
        """True when both files exist and ``cert`` stays valid for at least another day."""
        if not (cert.is_file() and key.is_file()):
            return False
        try:
            self.run("x509", "-in", str(cert), "-noout", "-checkend", str(_MIN_REMAINING_S))
        except PkiError:
            return False
        return True

    def names_all(self, cert: Path, names: tuple[str, ...]) -> bool:
        """True when ``cert``'s subjectAltName holds ``DNS:<name>`` for each of ``names``."""
        if not names:
            return True
        try:
            text = self.run("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
        except PkiError:
            return False
        held = {part.strip() for part in text.replace("\n", ",").split(",")}
        return all(f"DNS:{name}" in held for name in names)

    def self_signed(self, cert: Path, key: Path, subject: str, extensions: list[str]) -> None:
        _reserve_private(key)
        args = ["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt"]
        args += [f"ec_paramgen_curve:{_CURVE}", "-nodes", "-keyout", str(key)]
        args += ["-out", str(cert), "-days", str(VALIDITY_DAYS), "-subj", subject]
        args += ["-set_serial", _serial()]
        for ext in extensions:
            args += ["-addext", ext]
        self.run(*args)

    def signed(
        self,
        cert: Path,
        key: Path,
        subject: str,
        *,
        ca: tuple[Path, Path],
        extensions: list[str],
    ) -> None:
        _reserve_private(key)
        csr = cert.with_suffix(".csr")
        ext_file = cert.with_suffix(".ext")
        try:
            self.run(
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                f"ec_paramgen_curve:{_CURVE}",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                subject,
            )
            ext_file.write_text("\n".join(extensions) + "\n", encoding="ascii")
            ca_cert, ca_key = ca
            self.run(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca_cert),
                "-CAkey",
                str(ca_key),
                "-set_serial",
                _serial(),
                "-days",
                str(VALIDITY_DAYS),
                "-sha256",
                "-extfile",
                str(ext_file),
                "-out",
                str(cert),
            )
        finally:
            csr.unlink(missing_ok=True)
            ext_file.unlink(missing_ok=True)


def _reserve_private(key: Path) -> None:
    """Create ``key`` empty with mode 0600 so openssl's write never exposes it, even briefly."""
    key.unlink(missing_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def _serial() -> str:
    # Random positive 63-bit serials: unique enough per CA, and never negative in DER.
    return str(secrets.randbits(63) | 1)
