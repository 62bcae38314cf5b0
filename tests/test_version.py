"""controller.version: the build facts come from the environment the Dockerfile sets."""

from __future__ import annotations

from controller import version


def test_reads_every_field_from_the_environment() -> None:
    env = {
        version.ENV_VERSION: "1.2.3",
        version.ENV_COMMIT: "0123456789abcdef0123456789abcdef01234567",
        version.ENV_BUILD_ID: "build-42",
        version.ENV_BUILT_AT: "2026-11-26T00:00:00Z",
        version.ENV_SOURCE: "https://git.example.com/provenance-controller",
        version.ENV_PIPELINE_URL: "https://ci.example.com/runs/42",
        version.ENV_ENVIRONMENT: "production",
    }
    info = version.build_info(env)
    assert info.as_dict() == {
        "version": "1.2.3",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "build": "build-42",
        "built_at": "2026-11-26T00:00:00Z",
        "environment": "production",
        "pipeline_url": "https://ci.example.com/runs/42",
        "source": "https://git.example.com/provenance-controller",
    }


def test_missing_or_empty_values_read_unknown_and_version_falls_back_to_the_package() -> None:
    info = version.build_info({version.ENV_COMMIT: "  ", version.ENV_BUILD_ID: ""})
    assert info.commit == version.UNKNOWN
    assert info.build == version.UNKNOWN
    assert info.environment == version.UNKNOWN
    # The package is installed editable in the venv, so its metadata version is known.
    assert info.version == "0.1.0"
