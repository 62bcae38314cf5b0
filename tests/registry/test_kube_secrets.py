"""Pull Secrets read from the real kube-apiserver through `KubeSecretSource`."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from controller.kube import KubeApi
from controller.registry import CredentialsError, KubeSecretSource, parse_dockerconfigjson


async def test_dockerconfigjson_secret_round_trip(kube_api: KubeApi) -> None:
    namespace = "pull-" + secrets.token_hex(4)
    await kube_api.request("POST", "/api/v1/namespaces", body={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    config = json.dumps({"auths": {"registry.example.com": {
        "auth": base64.b64encode(b"robot:pw").decode()}}}).encode()
    await kube_api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "pull"},
        "data": {".dockerconfigjson": base64.b64encode(config).decode()}})
    source = KubeSecretSource(kube_api)
    data = await source.dockerconfigjson(namespace, "pull")
    assert data == config
    assert parse_dockerconfigjson(data)["registry.example.com"].password == "pw"
    assert await source.dockerconfigjson(namespace, "missing") is None


async def test_unreachable_api_server_is_a_credentials_error() -> None:
    from controller.kube import Credentials

    api = KubeApi(Credentials(server="http://127.0.0.1:9"), timeout=1)
    try:
        with pytest.raises(CredentialsError, match="cannot read Secret"):
            await KubeSecretSource(api).dockerconfigjson("ns", "pull")
    finally:
        await api.close()
