"""The controller process as an operator runs it: metrics after real admissions, its log, and
SIGTERM with the API server gone.

These tests stop an API server, so they start a control plane of their own instead of the
session's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from tests.builders import deployment, review
from tests.fixtures.cluster import kubectl

CONFIG = ("mode: enforce\nexempt_namespaces: [kube-system]\n"
          # A checkpoint every second: the checkpoint task is then writing (and retrying) when
          # the API server goes away, the state in which SIGTERM used to be ignored.
          "ledger:\n  checkpoint_interval_seconds: 1\n")


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    cp = LocalControlPlane(tmp_path_factory.mktemp("operability-cp"), etcd_fsync=False)
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def pair(own_plane: LocalControlPlane,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[DevController]]:
    """Two controller processes on one chain, each with its own webhook configuration: the API
    server calls both for every admission, so their ledger writes race."""
    controllers = []
    for name in ("ops-a", "ops-b"):
        workdir = tmp_path_factory.mktemp(name)
        config = workdir / "config.yaml"
        config.write_text(CONFIG)
        ctl = DevController(own_plane, workdir, config_file=config, name=name)
        ctl.start()
        controllers.append(ctl)
    yield controllers
    for ctl in controllers:
        ctl.stop()


def scrape(ctl: DevController) -> dict[str, float]:
    """The controller's /metrics, as {series: value}."""
    with urllib.request.urlopen(
            f"http://127.0.0.1:{ctl.health_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, number = line.rpartition(" ")
            samples[series] = float(number)
    return samples


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def _post_quietly(request: urllib.request.Request, ctl: DevController) -> None:
    """POST a review and drop the answer (a denial: nothing can be recorded)."""
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, context=ctl.ssl_context(), timeout=30).read()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_api_server(cp: LocalControlPlane) -> None:
    """Kill kube-apiserver only (etcd stays up): clients see connections refused."""
    for name, proc, _log in cp._procs:
        if name == "kube-apiserver":
            proc.kill()
            proc.wait()
            return
    raise AssertionError("no kube-apiserver process")


def admit(cp: LocalControlPlane, name: str) -> None:
    result = kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(deployment(name)))
    assert result.returncode == 0, result.stderr


def test_ledger_metrics_are_recorded_by_real_admissions(
        own_plane: LocalControlPlane, pair: list[DevController]) -> None:
    for i in range(12):
        admit(own_plane, f"ops-{i}-{uuid.uuid4().hex[:6]}")
    a, b = (scrape(ctl) for ctl in pair)
    # Every admission went through both processes; each entry was written once, by one of them.
    written = total(a, "provenance_ledger_appends_total") + total(
        b, "provenance_ledger_appends_total")
    assert written >= 12
    for samples in (a, b):
        assert samples["provenance_ledger_batch_size_count"] >= 1
        assert samples["provenance_ledger_batch_size_sum"] == total(
            samples, "provenance_ledger_appends_total")
    # Each replica holds its own writer lane, so they never race for a position: no 409s.
    for samples in (a, b):
        assert samples["provenance_ledger_lanes_held"] == 1
        assert total(samples, "provenance_ledger_conflicts_total") == 0


def test_a_cut_tail_is_counted_as_a_tail_verification_failure(
        own_plane: LocalControlPlane, pair: list[DevController]) -> None:
    before = sum(total(scrape(c), "provenance_ledger_tail_verification_failures_total")
                 for c in pair)
    # The newest segment of every lane: each replica's tail is then gone from under it.
    names = kubectl(own_plane, "get", "configmaps", "-n", "provenance-ledger", "-l",
                    "provenance.dev/ledger-role=segment", "-o", "name",
                    check=True).stdout.split()
    newest: dict[str, str] = {}
    for name in sorted(names):
        newest[name.rsplit("-", 1)[0]] = name
    assert len(newest) == 2, names
    kubectl(own_plane, "delete", "-n", "provenance-ledger", *newest.values(), check=True)
    refused = kubectl(own_plane, "apply", "-f", "-",
                      stdin=yaml.safe_dump(deployment(f"cut-{uuid.uuid4().hex[:6]}")))
    assert refused.returncode != 0
    after = sum(total(scrape(c), "provenance_ledger_tail_verification_failures_total")
                for c in pair)
    assert after >= before + 1
    # Nothing restarts on its own: the next admission is refused too, until an operator
    # recovers, on the record, every cut lane.
    again = kubectl(own_plane, "apply", "-f", "-",
                    stdin=yaml.safe_dump(deployment(f"cut-{uuid.uuid4().hex[:6]}")))
    assert again.returncode != 0 and "the chain was cut" in again.stderr
    recover = subprocess.run(
        [sys.executable, "-m", "controller.cli", "ledger", "recover", "--reason",
         "operability test: segments deleted on purpose", "--kubeconfig",
         str(own_plane.kubeconfig), "--quiet"],
        capture_output=True, text=True, timeout=120, check=False)
    assert recover.returncode == 0, recover.stderr
    assert recover.stdout.count("recorded: recovery by admin") == 2, recover.stdout
    admit(own_plane, f"recovered-{uuid.uuid4().hex[:6]}")


def test_the_log_carries_no_framework_settings_dump(
        own_plane: LocalControlPlane, pair: list[DevController]) -> None:
    admit(own_plane, f"log-{uuid.uuid4().hex[:6]}")
    lines = pair[0].log_path.read_text().splitlines()
    assert any('"logger":"kopf.objects"' in line for line in lines), "no per-object lines"
    assert not [line for line in lines if "OperatorSettings(" in line]
    assert max(len(line) for line in lines) < 1500


def test_sigterm_stops_the_controller_within_5s_with_the_api_server_gone(
        own_plane: LocalControlPlane, pair: list[DevController]) -> None:
    admit(own_plane, f"last-{uuid.uuid4().hex[:6]}")
    stop_api_server(own_plane)
    victim = pair[0]
    # A review in flight when the API server is gone: its ledger append retries against the
    # dead server until its deadline (the checkpoint task may be retrying too, but only when
    # the chain grew since its last tick, which timing decides).
    body = json.dumps(review(deployment(f"orphan-{uuid.uuid4().hex[:6]}"))).encode()
    request = urllib.request.Request(victim.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    in_flight = threading.Thread(target=_post_quietly, args=(request, victim), daemon=True)
    in_flight.start()
    # Long enough for the append to be retrying against the dead server.
    time.sleep(4)
    process = victim._proc
    assert process is not None and process.poll() is None
    cpu_before = cpu_seconds(process.pid)
    time.sleep(3)
    # Retrying an unreachable server must not spin a CPU.
    assert cpu_seconds(process.pid) - cpu_before < 1.0
    retries = total(scrape(victim), "provenance_ledger_retries_total")
    assert retries >= 1
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except Exception:
        pytest.fail(f"still running 5 s after SIGTERM:\n{victim.log_path.read_text()[-3000:]}")
    assert time.monotonic() - started < 5
    assert process.returncode == 0
