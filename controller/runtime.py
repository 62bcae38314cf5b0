"""Assemble the long-lived parts the operator runs with, and take them down again.

Plain Python (no kopf): the webhook edge calls `Runtime.build` at start-up and `close` at exit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from controller.admission import Admission, Stage
from controller.config import Config
from controller.kube import KubeApi
from controller.registry import KubeSecretSource
from controller.signatures import ImageVerifier
from controller.stages import SignatureStage

logger = logging.getLogger("provenance.runtime")


@dataclass
class Runtime:
    """Everything one controller process shares across requests."""

    config: Config
    api: KubeApi
    admission: Admission
    verifier: ImageVerifier | None = None
    _closers: list[object] = field(default_factory=list)

    @classmethod
    async def build(cls, config: Config, *, kubeconfig: str | None,
                    budget_seconds: float = 8.0) -> Runtime:
        """Connect to the API server and build the pipeline the configuration asks for."""
        api = KubeApi.from_kubeconfig(kubeconfig)
        stages: list[Stage] = []
        verifier = None
        if config.signatures.enabled:
            verifier = ImageVerifier(config.signatures, secrets=KubeSecretSource(api))
            stages.append(SignatureStage(verifier, config))
        admission = Admission(config, stages=tuple(stages), budget_seconds=budget_seconds)
        return cls(config=config, api=api, admission=admission, verifier=verifier)

    async def close(self) -> None:
        """Close connections; safe to call more than once."""
        if self.verifier is not None:
            await self.verifier.close()
        await self.api.close()
