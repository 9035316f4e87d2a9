"""Tabular input and output in chunks: CSV, Parquet and JSON lines, from paths or stdin.

Reading never holds more than one chunk of rows (plus the reader's own
buffers): CSV through pandas' chunked C parser, Parquet through
``pyarrow.parquet.ParquetFile.iter_batches``, JSON lines through a line
reader. Writers append chunk by chunk to a temporary file next to the target,
renamed over it only when everything succeeded (``-`` streams to stdout).

>>> fmt = detect_format("scores.parquet", None)
>>> fmt
'parquet'
>>> reader = open_reader("data.csv", "csv", chunksize=10_000)  # doctest: +SKIP
>>> for chunk in reader.chunks(): ...                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Generator, Iterator
from typing import IO, Any

from .._paths import open_to_read
from ..errors import InvalidArgumentError
from ._render import InputError

FORMATS = ("csv", "parquet", "jsonl")
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def detect_format(path: str, explicit: str | None, default: str | None = "csv") -> str:
    """The format named by ``explicit``, else by the file's extension (``.gz`` ignored).

    >>> detect_format("x.jsonl.gz", None), detect_format("-", None), detect_format("x", "parquet")
    ('jsonl', 'csv', 'parquet')
    """
    if explicit:
        return explicit
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    ext = os.path.splitext(name)[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if path == "-" and default:
        return default
    if default and not ext:
        return default
    raise InputError(
        f"cannot tell the format of {path!r} from its extension {ext!r}: "
        f"pass --format ({', '.join(FORMATS)})"
    )


class _CountingFile(io.RawIOBase):
    """Wraps a binary stream and counts the bytes read from it (for progress on stdin)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


class Reader:
    """Chunks of rows (pandas DataFrames) from one input.

    ``total`` and :meth:`position` are in ``unit`` ("bytes" or "rows") so a
    progress bar can follow; ``total`` is None when unknown (stdin).
    """

    def __init__(
        self,
        path: str,
        fmt: str,
        chunksize: int,
        str_columns: frozenset[str] = frozenset(),
        all_str: bool = False,
    ) -> None:
        self.path = path
        self.fmt = fmt
        self.chunksize = chunksize
        self.str_columns = str_columns
        self.all_str = all_str
        self.total: int | None = None
        self.unit = "bytes"
        self.rows = 0
        self._raw: Any = None
        self._counter: _CountingFile | None = None
        self._spool: Any = None
        self._parquet: Any = None
        # The chunk iterators handed out, closed before the files they read (a caller that
        # stops early leaves one suspended: finished by the garbage collector after the
        # file was closed, pandas' reader raised there, and Python printed "Exception
        # ignored in <generator ...>" on stderr).
        self._iterators: list[Generator[Any, None, None]] = []
        self._open()

    @property
    def name(self) -> str:
        return "stdin" if self.path == "-" else self.path

    def _open(self) -> None:
        if self.fmt == "parquet":
            self._open_parquet()
            return
        if self.path == "-":
            stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
            self._counter = _CountingFile(stdin)  # type: ignore[arg-type]
            self._raw = self._counter
        else:
            self._raw = _open_path(self.path)
            self.total = os.fstat(self._raw.fileno()).st_size
        self._stream: Any = io.BufferedReader(self._raw, 1 << 20) if self._counter else self._raw
        if self.path.lower().endswith(".gz"):
            self._stream = gzip.GzipFile(fileobj=self._stream, mode="rb")

    def _open_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.unit = "rows"
        source: Any
        if self.path == "-":
            # Parquet keeps its index at the end of the file: spool stdin to a
            # temporary file (on disk, so memory stays flat) and read that.
            self._spool = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
                prefix="skjar-stdin-", suffix=".parquet"
            )
            stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
            shutil.copyfileobj(stdin, self._spool, 1 << 20)
            self._spool.seek(0)
            source = self._spool
        else:
            source = _open_path(self.path)
            self._raw = source
        try:
            self._parquet = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.name} is not a readable Parquet file: {exc}") from None
        self.total = self._parquet.metadata.num_rows

    def position(self) -> int:
        """How far the reader got, in ``unit``."""
        if self.unit == "rows":
            return self.rows
        if self._counter is not None:
            return self._counter.count
        try:
            return int(self._raw.tell())
        except (OSError, ValueError):
            return 0

    def chunks(self) -> Iterator[Any]:
        """DataFrames of at most ``chunksize`` rows; raises InputError for unreadable data."""
        iterator = self._chunks()
        self._iterators.append(iterator)
        return iterator

    def _chunks(self) -> Generator[Any, None, None]:
        if self.fmt == "csv":
            it = self._csv_chunks()
        elif self.fmt == "jsonl":
            it = self._jsonl_chunks()
        else:
            it = self._parquet_chunks()
        for chunk in it:
            self.rows += len(chunk) if self.unit == "bytes" else 0
            yield chunk

    def _csv_chunks(self) -> Iterator[Any]:
        import pandas as pd

        kwargs: dict[str, Any] = {"chunksize": self.chunksize}
        if self.all_str:
            kwargs.update(dtype=str, keep_default_na=False)
        elif self.str_columns:
            kwargs["dtype"] = {c: str for c in self.str_columns}
        try:
            reader = pd.read_csv(self._stream, **kwargs)
            with reader:
                yield from reader
        except pd.errors.EmptyDataError:
            raise InputError(f"{self.name} is empty: no header and no rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{self.name} is not readable as CSV: {exc}") from None

    def _jsonl_chunks(self) -> Iterator[Any]:
        import pandas as pd

        rows: list[dict[str, Any]] = []
        stream = io.TextIOWrapper(self._stream, encoding="utf-8", newline="")
        lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"{self.name}, line {lineno}: not valid JSON ({exc})"
                    ) from None
                if not isinstance(row, dict):
                    raise InputError(
                        f"{self.name}, line {lineno}: expected a JSON object per line "
                        f"(column -> value), got {type(row).__name__}"
                    )
                rows.append(row)
                if len(rows) >= self.chunksize:
                    yield self._frame(pd, rows)
                    rows = []
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{self.name}, near line {lineno + 1}: not UTF-8 text ({exc})"
            ) from None
        finally:
            stream.detach()
        if rows:
            yield self._frame(pd, rows)

    def _frame(self, pd: Any, rows: list[dict[str, Any]]) -> Any:
        df = pd.DataFrame.from_records(rows)
        if self.all_str:
            return df.fillna("").astype(str)
        return df

    def _parquet_chunks(self) -> Iterator[Any]:
        for batch in self._parquet.iter_batches(batch_size=self.chunksize):
            df = batch.to_pandas()
            self.rows += len(df)
            yield df

    def close(self) -> None:
        for iterator in self._iterators:
            with contextlib.suppress(InputError):  # the input's own fault, already reported
                iterator.close()
        for f in (self._raw, self._spool):
            if f is not None and f is not sys.stdin and not isinstance(f, _CountingFile):
                try:
                    f.close()
                except OSError:  # pragma: no cover
                    pass


def _open_path(path: str) -> IO[bytes]:
    try:
        return open_to_read(path, "a data file")
    except InvalidArgumentError as exc:  # an input error to the CLI: exit 2
        raise InputError(str(exc)) from None


def open_reader(
    path: str,
    fmt: str,
    chunksize: int,
    str_columns: frozenset[str] = frozenset(),
    all_str: bool = False,
) -> Reader:
    """A :class:`Reader` for ``path`` (``-`` is stdin) in format ``fmt``."""
    return Reader(path, fmt, chunksize, str_columns, all_str)


def read_all(path: str, fmt: str, str_columns: frozenset[str] = frozenset()) -> Any:
    """The whole input as one DataFrame (for test sets; raises InputError when it has no rows)."""
    import pandas as pd

    reader = open_reader(path, fmt, 100_000, str_columns)
    try:
        frames = list(reader.chunks())
    finally:
        reader.close()
    if not frames or not sum(len(f) for f in frames):
        raise InputError(f"{reader.name} has no rows")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class Writer:
    """Appends DataFrame chunks to CSV, JSON lines or Parquet; atomic for paths.

    >>> w = open_writer("out.csv", "csv")  # doctest: +SKIP
    >>> w.write(df); w.close()             # doctest: +SKIP
    """

    def __init__(self, path: str, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.rows = 0
        self._tmp: str | None = None
        self._parquet: Any = None
        self._schema: Any = None
        if path == "-":
            if fmt == "parquet":
                raise InputError("Parquet output needs a file path (-o FILE.parquet), not stdout")
            self._file: Any = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        else:
            target = os.path.abspath(path)
            folder = os.path.dirname(target)
            if os.path.isdir(target):
                raise InputError(f"{path!r} is a directory: give a file name for the output")
            if not os.path.isdir(folder):
                raise InputError(f"cannot write {path!r}: folder {folder!r} does not exist")
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{os.path.basename(target)}.", suffix=".partial", dir=folder
            )
            self._file = os.fdopen(fd, "wb")
        self._out: Any = self._file
        if path.lower().endswith(".gz"):
            if fmt == "parquet":
                self.abort()
                raise InputError("Parquet compresses itself: drop the .gz from the output name")
            self._out = gzip.GzipFile(fileobj=self._file, mode="wb")

    def write(self, df: Any) -> None:
        if self.fmt == "csv":
            text = df.to_csv(index=False, header=self.rows == 0, lineterminator="\n")
            self._out.write(text.encode("utf-8"))
        elif self.fmt == "jsonl":
            if len(df):
                text = df.to_json(orient="records", lines=True, force_ascii=False)
                self._out.write(text.encode("utf-8"))
                if not text.endswith("\n"):
                    self._out.write(b"\n")
        else:
            self._write_parquet(df)
        self.rows += len(df)
        if self.path == "-":
            self._out.flush()

    def _write_parquet(self, df: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for col in df.columns:
            if df[col].dtype == object:
                df[col] = df[col].astype(str)
        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._file, self._schema)
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._parquet is not None:
            self._parquet.close()
        if self._out is not self._file:
            self._out.close()  # the gzip trailer; the file itself stays open
        if self.path == "-":
            self._file.flush()
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        assert self._tmp is not None
        os.replace(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        """Drop what was written (a failed run leaves no partial output behind)."""
        if self.path == "-":
            return
        try:
            if self._parquet is not None:
                self._parquet.close()
        except Exception:  # pragma: no cover - best effort
            pass
        try:
            self._file.close()
        except OSError:  # pragma: no cover
            pass
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None


def open_writer(path: str, fmt: str) -> Writer:
    """A :class:`Writer` for ``path`` (``-`` is stdout) in format ``fmt``."""
    return Writer(path, fmt)
