"""controller.tls.settings: the chart's PROVENANCE_TLS_* variables become the settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from controller.tls import SelfManagedTls, TlsError
from controller.tls.settings import (
    ENV_CHECK_INTERVAL_SECONDS,
    ENV_RENEW_BEFORE_HOURS,
    ENV_VALIDITY_HOURS,
)

NAMES = {"namespace": "ns", "secret": "s", "service": "svc", "webhook_config": "vwc",
         "cert_dir": Path("/tls")}


def test_defaults_without_the_environment() -> None:
    settings = SelfManagedTls.from_environ(**NAMES, environ={})  # type: ignore[arg-type]
    assert settings.renew_before == dt.timedelta(days=30)
    assert settings.validity == dt.timedelta(days=365)
    assert settings.check_interval == 3600


def test_reads_the_variables_the_chart_sets() -> None:
    root = Path(__file__).resolve().parents[2]
    template = (root / "charts/provenance-controller/templates/controller/deployment.yaml")
    text = template.read_text()
    for name in (ENV_RENEW_BEFORE_HOURS, ENV_VALIDITY_HOURS, ENV_CHECK_INTERVAL_SECONDS):
        assert f"name: {name}" in text, f"the chart does not set {name}"
    values = yaml.safe_load((root / "charts/provenance-controller/values.yaml").read_text())
    chart = values["tls"]["selfManaged"]
    settings = SelfManagedTls.from_environ(**NAMES, environ={  # type: ignore[arg-type]
        ENV_RENEW_BEFORE_HOURS: str(chart["renewBeforeHours"]),
        ENV_VALIDITY_HOURS: str(chart["validityHours"]),
        ENV_CHECK_INTERVAL_SECONDS: str(chart["checkIntervalSeconds"]),
    })
    assert settings.renew_before == dt.timedelta(hours=chart["renewBeforeHours"])
    assert settings.validity == dt.timedelta(hours=chart["validityHours"])
    assert settings.check_interval == chart["checkIntervalSeconds"]


@pytest.mark.parametrize("environ", [
    {ENV_RENEW_BEFORE_HOURS: "soon"},
    {ENV_CHECK_INTERVAL_SECONDS: "0"},
    {ENV_RENEW_BEFORE_HOURS: "100", ENV_VALIDITY_HOURS: "50"},
])
def test_bad_values_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(TlsError):
        SelfManagedTls.from_environ(**NAMES, environ=environ)  # type: ignore[arg-type]
