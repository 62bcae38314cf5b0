"""The ledger configuration model."""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap

import pytest
from pydantic import ValidationError

from controller.ledger.config import LedgerConfig


def test_defaults_match_the_issue() -> None:
    config = LedgerConfig()
    assert config.enabled
    assert config.namespace == "provenance-ledger"
    assert config.segment_max_bytes == 128 * 1024
    assert config.checkpoint_key_namespace != config.namespace


def test_every_field_is_documented() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(LedgerConfig)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = {
        stmt.target.id for stmt, after in itertools.pairwise(body)
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }
    assert documented == set(LedgerConfig.model_fields)


@pytest.mark.parametrize("values", [
    {"unknown": 1},
    {"segment_max_bytes": 2 * 1024 * 1024},
    {"segment_max_bytes": 8192, "max_entry_bytes": 8192},
    {"namespace": "Not_A_Name"},
    {"checkpoint_key_namespace": "provenance-ledger"},
])
def test_bad_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LedgerConfig.model_validate(values)
