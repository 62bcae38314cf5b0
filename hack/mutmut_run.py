"""mutmut's command line, with its operators kept off what is wording rather than behaviour.

mutmut rewrites every plain string literal three ways ("XX…XX", lower and upper case) and
replaces or drops each call argument. On a message such as
`ImageReferenceError("the image reference is empty")` that yields mutants only a test asserting
the whole sentence could kill, and the sentence is not a security rule: the denial's reason code,
the check that raises and the fields it names are, and those are still mutated. So this leaves
alone:

- prose string literals (two words or more separated by a space), alone or as an f-string's
  text: a literal that is one token (`"sha256:"`, `"https"`, `"ci-allowlist"`, `"Basic "`) is
  still mutated, because code compares against it;
- call arguments that are such prose;
- the arguments of logging calls (`log.…`, `logger.…`), which never change a verdict.

Run as `python hack/mutmut_run.py run …`, exactly like `mutmut run …`; `… report MIN SECONDS`
prints what hack/mutation.sh ends with.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable

import libcst as cst
from mutmut.mutation import mutators

_PROSE = re.compile(r"[A-Za-z]\w*[,.:;()]* +[(\[{'\"]*[A-Za-z]")
_WORDS = re.compile(r"[A-Za-z]{2,} | [A-Za-z]{2,}")
_LOGGERS = frozenset({"log", "logger", "logging"})


def is_prose(node: cst.BaseExpression) -> bool:
    """A literal whose text reads as words for a person, not a token code compares against."""
    if isinstance(node, cst.SimpleString):
        return bool(_PROSE.search(node.value))
    if isinstance(node, cst.FormattedString):
        # Words between the fields: f"{subject} is not RFC 3339: {value!r}".
        return any(_WORDS.search(p.value) for p in node.parts
                   if isinstance(p, cst.FormattedStringText))
    if isinstance(node, cst.ConcatenatedString):
        return is_prose(node.left) or is_prose(node.right)
    return False


def _is_logging(node: cst.Call) -> bool:
    func = node.func
    return (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)
            and func.value.value in _LOGGERS)


def _strings(node: cst.BaseString) -> Iterable[cst.BaseString]:
    if is_prose(node):
        return ()
    return mutators.operator_string(node)


def _only_code_arguments(
    operator: Callable[[cst.Call], Iterable[cst.Call]],
) -> Callable[[cst.Call], Iterable[cst.Call]]:
    def filtered(node: cst.Call) -> Iterable[cst.Call]:
        if _is_logging(node):
            return
        for mutant in operator(node):
            kept = [id(a) for a in mutant.args]
            changed = [a for a in node.args if id(a) not in kept]
            if changed and all(is_prose(a.value) for a in changed):
                continue
            yield mutant

    return filtered


def install() -> None:
    """Swap the filtered operators into mutmut's table (shared by reference with its users)."""
    table = mutators.mutation_operators
    for index, (node_type, operator) in enumerate(table):
        if operator is mutators.operator_string:
            table[index] = (node_type, _strings)
        elif operator in (mutators.operator_arg_removal, mutators.operator_dict_arguments):
            table[index] = (node_type, _only_code_arguments(operator))


def report(minimum: float, seconds: int) -> int:
    """Every mutant not killed, with its change, then the score line; 1 below `minimum`.

    In this process, with the same operators: mutant names are numbered by what the operators
    yield, so a diff made with mutmut's unfiltered table would show the wrong change.
    """
    from mutmut.configuration import config  # noqa: F401  (loads [tool.mutmut] from cwd)
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    counts: dict[str, int] = {}
    total = 0
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            total += 1
            if status in ("killed", "timeout", "not checked"):
                continue  # a run cut short leaves "not checked": counted below, not listed
            print(f"{status}: {name}")
            diff = get_diff_for_mutant(name, path=path)
            for line in diff.splitlines():
                if line[:1] in "+-" and not line.startswith(("+++", "---")):
                    print(f"    {line.strip()[:150]}")
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    score = 100.0 * killed / total if total else 0.0
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())
                       if s not in ("killed", "timeout"))
    checked = total - counts.get("not checked", 0)
    if checked != total:
        print(f"of the {checked} checked: {100.0 * killed / max(checked, 1):.1f}% killed")
    print(f"{total - killed} not killed ({others or 'none'}); {seconds} s")
    print(f"mutation score: {score:.1f}% ({killed} of {total} killed)")
    return 0 if score >= minimum and total else 1


if __name__ == "__main__":
    install()
    if sys.argv[1:2] == ["report"]:
        sys.exit(report(float(sys.argv[2]), int(sys.argv[3])))
    from mutmut.__main__ import cli

    sys.argv[0] = "mutmut"
    sys.exit(cli())
