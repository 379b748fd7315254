"""HTTPS: a real server with a certificate, the registrar advertising https with that certificate,
and the operator's probe trusting exactly it."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker_operator.external.probe import probe
from reranker_server.api.registration import Registrar
from reranker_server.core.settings import Settings


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_files_go_together_and_must_exist(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = certificate
    with pytest.raises(ValueError, match="go together"):
        Settings(tls_cert_file=cert)
    with pytest.raises(ValueError, match="TLS_KEY_FILE: no such file"):
        Settings(tls_cert_file=cert, tls_key_file=tmp_path / "missing.pem")


def test_registrar_advertises_https_with_its_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    settings = Settings(register=True, reranker="fleet", advertise_address="10.0.0.5:8443", tls_cert_file=cert,
                        tls_key_file=key)  # fmt: skip
    spec = Registrar(settings, client=None, capacity=4).endpoint()["spec"]  # type: ignore[arg-type]
    assert spec["scheme"] == "https" and spec["caBundle"] == cert.read_text()


@pytest.mark.slow
def test_a_server_with_a_certificate_serves_https_and_the_probe_checks_it(
    start_server: Any, minilm_cross_dir: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = start_server(
        {"MODEL_NAME": str(minilm_cross_dir), "TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}, wait=False
    )
    url = f"https://127.0.0.1:{server.port}"
    trusting = ssl.create_default_context(cadata=cert.read_text())

    async def probes() -> tuple[Any, Any]:
        for _ in range(600):
            pinned = await probe(httpx.AsyncClient(), f"{url}/health", 2.0, cert.read_text())
            if pinned.ok:
                break
            await asyncio.sleep(0.2)
        unpinned = await probe(httpx.AsyncClient(), f"{url}/health", 2.0)  # system CAs don't know it
        return pinned, unpinned

    pinned, unpinned = asyncio.run(probes())
    assert pinned.ok and pinned.model == str(minilm_cross_dir), pinned
    assert not unpinned.ok and "CERTIFICATE_VERIFY_FAILED" in (unpinned.error or ""), unpinned
    response = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a"]}, verify=trusting)
    assert response.status_code == 200
    with pytest.raises(httpx.HTTPError):  # plain http to a TLS listener gets no answer
        httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=2).raise_for_status()
