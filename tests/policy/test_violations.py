"""controller.policy.violations: the denial message and how decisions grow along the pipeline."""

from __future__ import annotations

import pytest

from controller.policy.violations import Decision, Reason, Violation

ONE = Violation(Reason.IMAGE_NOT_PINNED, "container c0 uses 'nginx'", "pin it", "container c0")
TWO = Violation(Reason.ACTOR_MISMATCH, "deployed-by says bob", "set it", "deployed-by")


@pytest.mark.parametrize(("violations", "head"), [
    ((ONE,), "provenance-controller denied this Deployment (1 problem):"),
    ((ONE, TWO), "provenance-controller denied this Deployment (2 problems):"),
    ((), "provenance-controller denied this Deployment (0 problems):"),
])
def test_the_message_counts_and_lists_every_problem(
    violations: tuple[Violation, ...], head: str,
) -> None:
    message = Decision(violations=violations).message("Deployment")
    assert message.split("\n") == [head, *(f"  - {v.render()}" for v in violations)]


def test_the_message_names_what_was_denied() -> None:
    assert Decision(violations=(ONE,)).message("StatefulSet").startswith(
        "provenance-controller denied this StatefulSet (1 problem):")
    assert Decision(violations=(ONE,)).message().startswith(
        "provenance-controller denied this workload (1 problem):")


def test_render_is_code_message_and_fix() -> None:
    assert ONE.render() == "[ImageNotPinned] container c0 uses 'nginx' (fix: pin it)"


@pytest.mark.parametrize("enforce", [True, False])
def test_with_violations_keeps_everything_else(enforce: bool) -> None:
    decision = Decision(violations=(ONE,), enforce=enforce, exempt_reason="",
                        notes=("registry note",))
    grown = decision.with_violations([TWO])
    assert grown == Decision(violations=(ONE, TWO), enforce=enforce, notes=("registry note",))
    exempt = Decision(exempt_reason="namespace kube-system is exempt").with_violations(())
    assert exempt.exempt_reason == "namespace kube-system is exempt"


@pytest.mark.parametrize(("violations", "enforce", "allowed"), [
    ((), True, True), ((ONE,), True, False), ((ONE,), False, True), ((), False, True),
])
def test_allowed(violations: tuple[Violation, ...], enforce: bool, allowed: bool) -> None:
    assert Decision(violations=violations, enforce=enforce).allowed is allowed


def test_warnings_are_notes_then_audited_violations() -> None:
    audit = Decision(violations=(ONE,), enforce=False, notes=("n",))
    assert audit.warnings() == ["n", f"provenance (audit): {ONE.render()}"]
    assert Decision(violations=(ONE,), notes=("n",)).warnings() == ["n"]
