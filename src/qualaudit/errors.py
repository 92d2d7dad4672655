"""The library's own exception types: every error a caller should expect is one of these."""

from __future__ import annotations


class QualauditError(Exception):
    """Base class of every error qualaudit raises on purpose."""


class InputError(QualauditError, ValueError):
    """A transcript (or one of its rows) cannot be read.

    The message names where (file, line or row, transcript id, field), what was expected,
    what was found and how to fix it; the same parts are kept as attributes so that a
    pipeline can write them to an errors file without re-parsing the message.

    `field` is the human-readable name of what is wrong (a key, a column, `turns[2].role`).
    `turn` and `part` say the same in structured form: `turn` is the 0-based position of the
    raw turn at fault (None when the error is not about one turn) and `part` the part of the
    turn ("role", "text", "timestamp", "agent_type", "index") or of the transcript ("id",
    "agent_type", "metadata", "n_input_turns"), so that a reader can name the user's own
    line, column or key without parsing `field`.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        transcript_id: str | None = None,
        field: str | None = None,
        hint: str | None = None,
        turn: int | None = None,
        part: str | None = None,
    ) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.transcript_id = transcript_id
        self.field = field
        self.hint = hint
        self.turn = turn
        self.part = part
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.source is not None:
            where.append(str(self.source))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.transcript_id is not None:
            where.append(f"transcript {self.transcript_id!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        text = (", ".join(where) + ": " if where else "") + self.reason
        return f"{text}. {self.hint}" if self.hint else text

    def located(self, **where: object) -> InputError:
        """A copy with location parts filled in where this error does not have them yet."""
        parts = {
            "source": self.source,
            "line": self.line,
            "transcript_id": self.transcript_id,
            "field": self.field,
            "turn": self.turn,
            "part": self.part,
        }
        for key, value in where.items():
            if parts.get(key) is None:
                parts[key] = value
        return InputError(self.reason, hint=self.hint, **parts)  # type: ignore[arg-type]


class UsageError(QualauditError, ValueError):
    """The request cannot be done as asked: options that conflict with each other or with the
    files named (resuming into stdout, into a CSV, or into an output another model wrote).
    Nothing was written. The CLI exits with code 2."""


class OutputError(QualauditError, OSError):
    """The output cannot be written or resumed: another process is writing it (an OS lock
    held), or what it holds already cannot be read back. Nothing was written. The CLI exits
    with code 1."""


class RejectedRowError(QualauditError):
    """A run with `on_error="fail"` stopped at a rejected transcript: `error` is its InputError.
    The rows before it are written and complete. The CLI exits with code 1."""

    def __init__(self, error: InputError) -> None:
        self.error = error
        super().__init__(f"stopped at the first rejected transcript (on_error='fail'): {error}")


class ModelLoadError(QualauditError):
    """A saved model is missing, unsafe (pickle weights) or does not match this library."""


class NotFittedError(QualauditError, AttributeError):
    """A calibrator was used before `fit`."""
