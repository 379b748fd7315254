"""Credentials for the Kubernetes API -> an ``httpx.AsyncClient`` pointed at it.

The ``kubernetes`` package resolves them the usual way: the in-cluster service account, else
KUBECONFIG / ~/.kube/config. Plain REST over httpx keeps every call explicit.
"""

from __future__ import annotations

import ssl

import httpx


def api_client(timeout: float = 30.0) -> httpx.AsyncClient:
    from kubernetes import config as kube_config
    from kubernetes.client import Configuration

    configuration = Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    headers: dict[str, str] = {}
    token = configuration.get_api_key_with_prefix("authorization") or configuration.get_api_key_with_prefix(
        "BearerToken"
    )
    if token:
        headers["Authorization"] = token
    verify: ssl.SSLContext | bool = configuration.verify_ssl
    if configuration.verify_ssl and configuration.host.startswith("https"):
        verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            verify.load_cert_chain(configuration.cert_file, configuration.key_file)
    return httpx.AsyncClient(base_url=configuration.host, headers=headers, verify=verify, timeout=timeout)
