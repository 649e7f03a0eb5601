"""Throwaway PKI for TLS tests (a CA, server and client certificates for 127.0.0.1) and
a redis-server with a TLS port only and the router's ACL user."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from router.store.local import free_port

ROUTER_PASSWORD = "router-acl-pw-6d1f0c2b9e"  # throwaway test passwords
ADMIN_PASSWORD = "ops-acl-pw-47aa09"
# The ACL line from README.md ("Redis: TLS and an ACL user"): the router's keys,
# its pub/sub channels, every command but the dangerous ones.
ROUTER_ACL = (
    f"user router on >{ROUTER_PASSWORD} resetkeys ~{{ws:* ~{{audit:* ~router:* "
    f"resetchannels &router:* &{{ws:* +@all -@dangerous"
)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: ExtendedKeyUsageOID | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        assert usage is not None
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, prefix: str = "") -> Pki:
    """Writes ca.pem, server.pem/server.key and client.pem/client.key into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{prefix}test CA")
    ca_cert = _issue(f"{prefix}test CA", ca_key, ca_name, ca_key, ca=True)
    out: dict[str, Path] = {}
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"{prefix}{role}", key, ca_name, ca_key, usage=usage)
        out[f"{role}_cert"] = directory / f"{prefix}{role}.pem"
        out[f"{role}_key"] = directory / f"{prefix}{role}.key"
        out[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, out[f"{role}_key"])
    ca_path = directory / f"{prefix}ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(ca=ca_path, **out)


class TlsRedis:
    """redis-server with a TLS port only, the default user off, the router's ACL user
    and an `ops` user for the test's own checks."""

    def __init__(self, directory: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: apt-get install -y redis-server")
        self.pki = make_pki(directory, prefix="redis-")
        self.port = free_port()
        conf = directory / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    "bind 127.0.0.1",
                    f"tls-port {self.port}",
                    f"tls-cert-file {self.pki.server_cert}",
                    f"tls-key-file {self.pki.server_key}",
                    f"tls-ca-cert-file {self.pki.ca}",
                    "tls-auth-clients no",
                    f"dir {directory}",
                    'save ""',
                    "appendonly no",
                    "loglevel warning",
                    "user default off",
                    ROUTER_ACL,
                    f"user ops on >{ADMIN_PASSWORD} ~* &* +@all",
                ]
            )
            + "\n"
        )
        self.proc = subprocess.Popen(
            [exe, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"redis-server with TLS exited: {err[:500]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server with TLS did not start")
            time.sleep(0.05)

    def url(self, user: str, password: str) -> str:
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.pki.ca}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
