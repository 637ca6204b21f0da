"""Local dataset files -> raw rows, with every unreadable row recorded instead of dropped.

Each reader yields, in file order, a ``RawRow`` for every row it could parse and a ``Rejected``
(stage "read") for every row it could not, so one bad line never costs the rest of the file and
every reject can be traced to its file and line.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainer.data.example import DataError, RawRow, Rejected

RAW_PREVIEW_CHARS = 500  # enough to recognise a row in a reject report without copying huge rows
# Stage of a Rejected that stands for a whole file no row of which could be read: the pipeline
# stops on it rather than counting a file of many rows as one rejected row.
FILE_STAGE = "file"
_BOM = "\ufeff"

Reader = Callable[[Path], Iterator["RawRow | Rejected"]]


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files to read, in a stable order.

    Args:
        paths: files and folders. A file is kept as given (even when hidden: it was named on
            purpose); a folder expands to the data files under it, recursively, sorted, skipping
            hidden files and anything inside hidden folders (``.git``, ``.cache``...).

    Returns:
        The files, each folder's files in sorted order, folders and files in the order given.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(_data_files_under(path))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"dataset path {path} does not exist")
    # A file named twice (itself and through its folder) is read once.
    unique = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _data_files_under(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        # Only the parts below the folder count: the folder itself may live under a hidden one.
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if not hidden and path.suffix.lower() in READERS and path.is_file():
            found.append(path)
    return sorted(found)


def iter_rows(paths: list[Path]) -> Iterator[RawRow | Rejected]:
    """Rows of every file, in order, after expanding folders (see ``expand_paths``).

    Raises:
        ValueError: a file's suffix has no reader (before anything is read).
        FileNotFoundError: a path does not exist.
    """
    files = expand_paths(paths)
    for path in files:
        if path.suffix.lower() not in READERS:
            raise ValueError(
                f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                f"known: {', '.join(READERS)}"
            )
    for path in files:
        yield from READERS[path.suffix.lower()](path)


# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE"),
)


def wide_encoding(head: bytes) -> str | None:
    """UTF-16 / UTF-32, told by a byte-order mark or by zero bytes in mostly-ASCII text: such a
    file can never be read as UTF-8, so it stops the job with a name for what it is."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{name} (it starts with a {name.split()[0]} byte-order mark)"
    if len(head) >= 8 and head.count(0) >= len(head) // 4:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        return f"{'UTF-16 BE' if even > odd else 'UTF-16 LE'} (every other byte is zero)"
    return None


def not_utf8_reason(raw: bytes, exc: UnicodeDecodeError) -> str:
    """'not valid UTF-8 ...', with the 8-bit encoding the bytes seem to be in when one fits.

    A guess, said as one: charset detectors guess no better on a line of mostly-ASCII JSON, and
    Windows-1252 (a superset of printable Latin-1) is what spreadsheets and editors on Windows
    write; bytes it cannot map are not that either.
    """
    reason = f"not valid UTF-8: {exc.reason} at byte {exc.start}"
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return reason
    return reason + "; the text seems to be Windows-1252 / Latin-1: convert the file to UTF-8 (iconv -f CP1252 -t UTF-8)"


def stop_on_unreadable(rejects: list[Rejected]) -> None:
    """Raise when a whole file could not be read: its rows cannot be counted, so the job stops
    instead of counting a file of many rows as one rejected row."""
    unreadable = [r for r in rejects if r.stage == FILE_STAGE]
    if unreadable:
        raise DataError(
            "; ".join(f"{r.file}{f':{r.line}' if r.line else ''}: {r.reason}" for r in unreadable)
            + ". Fix or remove the file: its rows cannot be counted, so the job does not guess."
        )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:RAW_PREVIEW_CHARS]


def _row_or_reject(file: str, line: int, value: Any, raw: Any) -> RawRow | Rejected:
    if isinstance(value, dict):
        return RawRow(file, line, value)
    reason = f"expected a JSON object, got {_type_name(value)}"
    return Rejected(file, line, reason, raw=_preview(raw))


def read_jsonl(path: Path) -> Iterator[RawRow | Rejected]:
    """One row per non-blank line; line numbers are 1-based lines of the file.

    Read line by line here rather than with ``datasets``' JSON loader: that loader fails the whole
    file on one malformed line and keeps no line numbers, so one typo would hide every other row
    and the user could not find it. Lines are read as bytes and decoded one at a time so that
    invalid UTF-8 costs only its own line.
    """
    file = str(path)
    with path.open("rb") as handle:
        wide = wide_encoding(handle.read(4096))
        if wide:
            yield Rejected(file, None, f"the file is {wide}, not UTF-8; convert it to UTF-8 (iconv -f {wide.split(' (')[0].replace(' ', '')} -t UTF-8)", stage=FILE_STAGE)
            return
        handle.seek(0)
        lines_seen = False
        for lineno, raw_line in enumerate(handle, start=1):
            lines_seen = lines_seen or bool(raw_line.strip())
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = not_utf8_reason(raw_line, exc)
                preview = raw_line.decode("utf-8", errors="replace").rstrip("\r\n")
                yield Rejected(file, lineno, reason, raw=preview[:RAW_PREVIEW_CHARS])
                continue
            if lineno == 1:
                text = text.removeprefix(_BOM)  # editors on Windows prepend one; json rejects it
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                reason = f"invalid JSON: {exc.msg} at column {exc.colno}"
                yield Rejected(file, lineno, reason, raw=text.rstrip("\r\n")[:RAW_PREVIEW_CHARS])
                continue
            yield _row_or_reject(file, lineno, value, text.rstrip("\r\n"))
    if not lines_seen:
        yield Rejected(file, None, "empty file: no rows in it", stage=FILE_STAGE)


def read_json(path: Path) -> Iterator[RawRow | Rejected]:
    """Rows of a JSON array of objects, or of an object holding one list (``{"data": [...]}``).

    A row's line is its 1-based index in the array. A JSON document cannot be parsed past its
    first error, so an invalid file is one reject naming the file line of the error.
    """
    file = str(path)
    data = path.read_bytes()
    if not data.strip():
        yield Rejected(file, None, "empty file: no rows in it", stage=FILE_STAGE)
        return
    wide = wide_encoding(data[:4096])
    if wide:
        yield Rejected(file, None, f"the file is {wide}, not UTF-8; convert it to UTF-8", stage=FILE_STAGE)
        return
    try:
        value = json.loads(data.decode("utf-8").removeprefix(_BOM))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        reason = "invalid JSON file (no row of it can be read): " + not_utf8_reason(data, exc)
        yield Rejected(file, line, reason, stage=FILE_STAGE)
        return
    except json.JSONDecodeError as exc:
        reason = (
            f"invalid JSON file (no row of it can be read): {exc.msg} "
            f"at line {exc.lineno} column {exc.colno}"
        )
        lines = exc.doc.splitlines()
        raw = lines[exc.lineno - 1][:RAW_PREVIEW_CHARS] if exc.lineno <= len(lines) else None
        yield Rejected(file, exc.lineno, reason, raw=raw, stage=FILE_STAGE)
        return
    items = _row_list(value)
    if isinstance(items, str):
        yield Rejected(file, None, items, stage=FILE_STAGE)
        return
    for index, item in enumerate(items, start=1):
        yield _row_or_reject(file, index, item, item)


def _row_list(value: Any) -> list[Any] | str:
    """The list of rows in a parsed JSON file, or the reason there is none."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lists = [key for key, item in value.items() if isinstance(item, list)]
        if len(lists) == 1:
            return value[lists[0]]
        return (
            "expected a JSON array of objects, or an object holding exactly one list of them; "
            f"got an object with {len(lists)} lists (keys: {list(value)})"
        )
    return f"expected a JSON array of objects, got {_type_name(value)}"


def read_parquet(path: Path) -> Iterator[RawRow | Rejected]:
    """Rows of a parquet file, streamed by record batch; a row's line is its 1-based index."""
    import pyarrow  # heavy: imported only when a parquet file is actually read
    import pyarrow.parquet as pq

    file = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as exc:
        yield Rejected(file, None, f"unreadable parquet file (no row of it can be read): {exc}", stage=FILE_STAGE)
        return
    index = 0
    for batch in parquet.iter_batches():
        for row in batch.to_pylist():
            index += 1
            yield RawRow(file, index, row)


READERS: dict[str, Reader] = {".jsonl": read_jsonl, ".json": read_json, ".parquet": read_parquet}
