"""A throw-away CA and the TLS material the test control plane needs (generated at each start)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _leaf(ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, common_name: str, *,
          ips: list[str], usage: x509.ObjectIdentifier
          ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    now = dt.datetime.now(dt.UTC)
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if ips:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_token_kubeconfig(path: Path, *, server: str, ca: str, user: str, token: str) -> None:
    """A kubeconfig that authenticates with a bearer token, readable by its owner only."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "the0-test", "cluster": {"server": server,
                                                        "certificate-authority": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "the0-test", "context": {"cluster": "the0-test", "user": user}}],
        "current-context": "the0-test",
    }, indent=2))
    path.chmod(0o600)


# Service IPs: a range reserved for benchmarking (RFC 2544), so an in-cluster stack's
# kube-proxy rules, which also catch the host's own traffic to the range, can never shadow a
# real network of the host. The first address is `kubernetes.default`.
SERVICE_CLUSTER_IP_RANGE = "198.18.0.0/24"
KUBERNETES_SERVICE_IP = "198.18.0.1"


def write_pki(directory: Path, *, kubelet_ips: list[str] | None = None) -> dict[str, Path]:
    """Writes ca.crt, server.crt/key (SAN 127.0.0.1, localhost, the `kubernetes` Service's
    IP and name), sa.key/sa.pub and the
    kubelet-client pair the API server presents to kubelets into directory. With
    `kubelet_ips`, also kubelet.crt/key: the real node's serving certificate (IP SANs)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "the0-k8s test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = _key()
    paths = {
        "ca_crt": directory / "ca.crt",
        "ca_key": directory / "ca.key",
        "server_crt": directory / "server.crt",
        "server_key": directory / "server.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    _write_cert(ca, paths["ca_crt"])
    _write_key(ca_key, paths["ca_key"])
    _write_cert(server, paths["server_crt"])
    _write_key(server_key, paths["server_key"])
    _write_key(sa_key, paths["sa_key"])
    # The API server's identity towards kubelets (logs, exec): the real node's kubelet trusts
    # the stack CA and asks the API server what this user may do (RBAC binds it).
    client, client_key = _leaf(ca, ca_key, KUBELET_CLIENT_USER, ips=[],
                               usage=x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
    paths["kubelet_client_crt"] = directory / "kubelet-client.crt"
    paths["kubelet_client_key"] = directory / "kubelet-client.key"
    _write_cert(client, paths["kubelet_client_crt"])
    _write_key(client_key, paths["kubelet_client_key"])
    if kubelet_ips:
        serving, serving_key = _leaf(ca, ca_key, "the0-real-node", ips=kubelet_ips,
                                     usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        paths["kubelet_crt"] = directory / "kubelet.crt"
        paths["kubelet_key"] = directory / "kubelet.key"
        _write_cert(serving, paths["kubelet_crt"])
        _write_key(serving_key, paths["kubelet_key"])
    paths["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return paths
