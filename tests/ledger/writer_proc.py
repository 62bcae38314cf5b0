"""A ledger writer in its own process, for the crash test: appends until killed.

Usage: python -m tests.ledger.writer_proc KUBECONFIG CONFIG_JSON PREFIX
Claims a writer lane as a replica does, and prints `ok UID SEQ` after each append returns (that
is, when the admission would be allowed).
"""

from __future__ import annotations

import asyncio
import sys

from controller.kube import KubeApi
from controller.ledger.config import LedgerConfig
from controller.ledger.lanes import LaneClaim
from controller.ledger.store import ensure_ledger_namespace
from tests.ledger.helpers import admission_entry, new_ledger

CONCURRENCY = 8


async def main(kubeconfig: str, config_json: str, prefix: str) -> None:
    config = LedgerConfig.model_validate_json(config_json)
    api = KubeApi.from_kubeconfig(kubeconfig)
    await ensure_ledger_namespace(api, config)
    claim = LaneClaim(api, config, identity=f"writer-{prefix}")
    await claim.acquire()
    ledger = await new_ledger(api, config, chain=claim.chain)
    await ledger.start()
    keeper = asyncio.create_task(claim.keep(ledger.fence, ledger.switch))
    counter = iter(range(10**9))

    async def worker() -> None:
        while True:
            uid = f"{prefix}-{next(counter)}"
            receipt = await ledger.append(admission_entry(uid))
            sys.stdout.write(f"ok {uid} {receipt.seq}\n")
            sys.stdout.flush()

    await asyncio.gather(keeper, *(worker() for _ in range(CONCURRENCY)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
