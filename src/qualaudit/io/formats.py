"""One map from file extension to format, for every file qualaudit reads or writes:
transcripts, score files and label files."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

# Extension -> format. Readers and writers each accept a subset (`format_of`'s `accepted`).
SUFFIX_FORMATS: dict[str, str] = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}
TRANSCRIPT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv", "parquet", "convokit")
SCORE_FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv", "parquet")
LABEL_FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv")


def format_of(path: str | Path, accepted: tuple[str, ...], what: str) -> str:
    """The format of `path` from its extension, one of `accepted`; InputError naming the
    file, what it should hold (`what`, e.g. "a labels file") and the extensions accepted."""
    suffix = Path(path).suffix.lower()
    fmt = SUFFIX_FORMATS.get(suffix)
    if fmt not in accepted:
        suffixes = [s for s, f in SUFFIX_FORMATS.items() if f in accepted]
        raise InputError(f"cannot tell the format of {what} from the extension "
                         f"{suffix or '(none)'!r}; expected one of {', '.join(suffixes)}",
                         source=str(path))
    return fmt
