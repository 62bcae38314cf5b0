"""The checkpoint signing key, kept in a Secret outside the ledger namespace."""

from __future__ import annotations

import base64

from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import CheckpointSigner
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerError

KEY_FIELD = "private-key"
"""The Secret data key holding the PKCS#8 PEM Ed25519 private key."""


async def load_signer(api: KubeApi, config: LedgerConfig, *,
                      create: bool = False) -> CheckpointSigner:
    """The signer from the configured Secret; with `create`, generate and store one if absent.

    Creation by name makes concurrent replicas agree: the loser of the race (409) reads the
    winner's key.
    """
    ns, name = config.checkpoint_key_namespace, config.checkpoint_key_secret
    path = f"/api/v1/namespaces/{ns}/secrets/{name}"
    try:
        secret = await api.request("GET", path)
    except KubeApiError as exc:
        if exc.status != 404 or not create:
            raise LedgerError(f"cannot read the checkpoint key Secret {ns}/{name}: "
                              f"{exc}") from exc
        signer = CheckpointSigner.generate()
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ns,
                             "labels": {"provenance.dev/ledger-role": "checkpoint-key"}},
                "data": {KEY_FIELD: base64.b64encode(signer.private_pem()).decode()}}
        try:
            await api.request("POST", f"/api/v1/namespaces/{ns}/secrets", body=body)
        except KubeApiError as create_exc:
            if create_exc.status != 409:
                raise LedgerError(f"cannot create the checkpoint key Secret {ns}/{name}: "
                                  f"{create_exc}") from create_exc
            return await load_signer(api, config, create=False)
        return signer
    encoded = (secret.get("data") or {}).get(KEY_FIELD)
    if not encoded:
        raise LedgerError(f"the Secret {ns}/{name} has no {KEY_FIELD!r} key")
    return CheckpointSigner.from_pem(base64.b64decode(encoded))
