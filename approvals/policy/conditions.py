"""CEL conditions: compiling a rule's `when` and checking every name it reads (docs/policies.md).

Used by the document (a condition that does not compile is refused with its line and column) and
by the engine (which runs the compiled program on a call's context)."""

from __future__ import annotations

import re

import cel

MAX_CONDITION_CHARS = 2000

# What a condition may read (see engine.call_context), and the functions of the CEL engine it may
# call (tests/approvals/test_policy.py checks each of them really runs). Operators (_&&_, @in, …)
# are always allowed.
CEL_VARIABLES = frozenset({"args", "session", "tool", "now", "time"})
CEL_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
        "bytes", "timestamp", "duration", "type", "dyn", "getFullYear", "getMonth", "getDate",
        "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds",
        "getMilliseconds",
    }
)  # fmt: skip
# Macros bind a loop variable: `args.items.exists(i, i.price > 10)` reads `i`.
_MACRO_BINDER = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_PARSE_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


class ConditionError(ValueError):
    """A CEL condition that does not compile, or uses a name it cannot read. The message names
    the line and column, and shows the place with a caret."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line, self.column = line, column


def _caret(source: str, line: int, column: int) -> str:
    lines = source.splitlines() or [""]
    text = lines[min(max(line, 1), len(lines)) - 1]
    return f"\n    {text}\n    {' ' * max(column - 1, 0)}^"


def _position_of(source: str, name: str) -> tuple[int, int]:
    """Line and column (1-based) of the first use of `name` as an identifier."""
    match = re.search(rf"(?<![\w.]){re.escape(name)}\b", source) or re.search(rf"\b{re.escape(name)}\b", source)
    offset = match.start() if match else 0
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


def compile_condition(source: str) -> cel.Program:
    """Compile a CEL condition and check every name it reads. Raises ConditionError."""
    if len(source) > MAX_CONDITION_CHARS:
        raise ConditionError(f"The condition is longer than {MAX_CONDITION_CHARS} characters.")
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        found = _PARSE_POSITION.search(text)
        if found is None:
            raise ConditionError(f"The condition does not compile: {text}") from None
        line, column, detail = int(found.group(1)), int(found.group(2)), found.group(3).strip()
        raise ConditionError(
            f"Line {line}, column {column}: {detail}{_caret(source, line, column)}", line=line, column=column
        ) from None
    bound = set(_MACRO_BINDER.findall(source))
    for name in sorted(set(program.variables()) - CEL_VARIABLES - bound):
        line, column = _position_of(source, name)
        raise ConditionError(
            f"Line {line}, column {column}: unknown name '{name}' (a condition reads args, session, tool, "
            f"now and time){_caret(source, line, column)}",
            line=line,
            column=column,
        )
    for name in sorted(program.functions()):
        if name in CEL_FUNCTIONS or not name[:1].isalpha():
            continue
        line, column = _position_of(source, name)
        raise ConditionError(
            f"Line {line}, column {column}: unknown function '{name}'{_caret(source, line, column)}",
            line=line,
            column=column,
        )
    return program
