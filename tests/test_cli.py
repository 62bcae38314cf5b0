"""controller.cli: start-up refuses a bad configuration, naming the field; certs writes files."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main, operator_main


def test_operator_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("mode: sometimes\nannotations: {prefx: a/}\n")
    assert operator_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "mode" in err
    assert "annotations.prefx" in err


def test_operator_refuses_half_a_tls_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          ) -> None:
    assert operator_main(["--tls-cert", str(tmp_path / "c")]) == 2
    assert "go together" in capsys.readouterr().err


def test_certs_command(tmp_path: Path) -> None:
    assert main(["certs", "--out", str(tmp_path), "--host", "localhost"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_no_arguments_prints_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("stamp", "check", "ledger", "status", "verify-bundle", "certs"):
        assert name in out


def _every_subcommand() -> list[list[str]]:
    from controller.cli import _main_parser, _subcommands

    return [name.split() for name, _ in _subcommands(_main_parser())]


@pytest.mark.parametrize("command", _every_subcommand(), ids=" ".join)
def test_every_subcommand_help_shows_an_example(
        command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  kubectl-provenance " + command[0] in out
