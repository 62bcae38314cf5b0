"""Fixtures for the ledger tests: a fresh ledger namespace and a started `Ledger`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.kube import KubeApi
from controller.ledger.chain import CheckpointSigner
from controller.ledger.config import LedgerConfig
from controller.ledger.keys import load_signer
from controller.ledger.store import Ledger
from tests.ledger.helpers import ensure_namespace, unique_config


@pytest.fixture
async def ledger_config(kube_api: KubeApi) -> LedgerConfig:
    config = unique_config()
    await ensure_namespace(kube_api, config.checkpoint_key_namespace)
    return config


@pytest.fixture
async def signer(kube_api: KubeApi, ledger_config: LedgerConfig) -> CheckpointSigner:
    return await load_signer(kube_api, ledger_config, create=True)


@pytest.fixture
async def ledger(kube_api: KubeApi, ledger_config: LedgerConfig,
                 signer: CheckpointSigner) -> AsyncIterator[Ledger]:
    writer = Ledger(kube_api, ledger_config, signer=signer, periodic_checkpoints=False)
    await writer.start()
    yield writer
    await writer.close()
