"""``skjar predict MODEL DATA -o OUT``: score a file of any size, chunk by chunk.

Memory stays flat: one chunk of input rows (``--chunksize``) and its
predictions are in memory at a time, and each chunk's output is appended to
OUT before the next is read. OUT is written to a temporary file beside it and
renamed when every row has been scored, so a failure leaves no partial file.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(predict, ["model.skjar", "data.csv", "-o", "out.csv"])  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .. import api
from ._data import FORMATS, Reader, detect_format, open_reader, open_writer
from ._render import InputError, console, emit_json, human_bytes, is_terminal, note
from ._schema import InputPlan

METHODS = ("predict", "predict_proba", "decision_function", "transform")


def _label(value: Any) -> str:
    return str(value.item() if hasattr(value, "item") else value)


def output_frame(model: Any, method: str, result: Any) -> Any:
    """The method's result as a DataFrame with named columns.

    ``predict`` -> ``prediction`` (``prediction_0``… for several outputs);
    ``predict_proba`` -> ``proba_<class>``; ``decision_function`` -> ``decision``
    or ``decision_<class>``; ``transform`` -> the model's output feature names.

    >>> import numpy as np
    >>> output_frame(None, "predict", np.array([1, 0])).columns.tolist()
    ['prediction']
    """
    import numpy as np
    import pandas as pd

    classes = getattr(model, "classes_", None)
    if method == "predict_proba" and isinstance(result, list):
        parts = []
        for j, proba in enumerate(result):
            labels = classes[j] if isinstance(classes, list) else range(proba.shape[1])
            parts.append(pd.DataFrame(proba, columns=[f"proba_{j}_{_label(c)}" for c in labels]))
        return pd.concat(parts, axis=1)
    if hasattr(result, "toarray"):  # sparse output of transform
        result = result.toarray()
    arr = np.asarray(result)
    if method == "predict":
        if arr.ndim == 1:
            return pd.DataFrame({"prediction": arr})
        return pd.DataFrame(arr, columns=[f"prediction_{i}" for i in range(arr.shape[1])])
    if arr.ndim == 1:
        name = {"decision_function": "decision", "predict_proba": "proba"}.get(method, "x0")
        return pd.DataFrame({name: arr})
    width = arr.shape[1]
    if method in ("predict_proba", "decision_function"):
        prefix = "proba" if method == "predict_proba" else "decision"
        if isinstance(classes, np.ndarray) and len(classes) == width:
            return pd.DataFrame(arr, columns=[f"{prefix}_{_label(c)}" for c in classes])
        return pd.DataFrame(arr, columns=[f"{prefix}_{i}" for i in range(width)])
    names: list[str] = [f"x{i}" for i in range(width)]
    try:
        out = [str(n) for n in model.get_feature_names_out()]
        if len(out) == width and len(set(out)) == width:
            names = out
    except Exception:
        pass
    return pd.DataFrame(arr, columns=names)


def methods_of(model: Any) -> list[str]:
    """Which of METHODS the model offers (``available_if`` is honoured by hasattr)."""
    return [m for m in METHODS if hasattr(model, m)]


@contextmanager
def progress_bar(reader: Reader, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr following ``reader``; a no-op updater when disabled."""
    if not enabled:
        yield lambda rows: None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]scoring[/bold] {task.description}")]
    if reader.total:
        columns += [BarColumn(), TaskProgressColumn(), TimeRemainingColumn()]
    columns += [TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn()]
    with Progress(*columns, console=console(stderr=True), transient=False) as bar:
        task = bar.add_task(reader.name, total=reader.total or None, rows=0)

        def update(rows: int) -> None:
            bar.update(task, completed=reader.position(), rows=rows)

        yield update
        if reader.total:
            bar.update(task, completed=reader.total)


@click.command(short_help="Score a CSV, Parquet or JSON-lines file (or stdin), streamed in chunks.")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("data", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write the predictions (- for stdout); format from the extension.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="predict",
    show_default=True,
    help="Which method of the model to call.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Format of DATA (default: from its extension; csv for stdin).",
)
@click.option(
    "--output-format",
    type=click.Choice(FORMATS),
    default=None,
    help="Format of the output (default: from its extension; csv for stdout).",
)
@click.option(
    "--chunksize",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Rows scored at a time: memory is bounded by one chunk.",
)
@click.option(
    "--text-column",
    metavar="NAME",
    default=None,
    help="For text models: the column holding the texts (default: the only column).",
)
@click.option(
    "--keep",
    multiple=True,
    metavar="COL",
    help="Copy an input column (e.g. an id) to the output, before the predictions. Repeatable.",
)
@click.option("--ignore-extra", is_flag=True, help="Drop input columns the model does not use.")
@click.option(
    "--trust", multiple=True, metavar="NAME", help="Extra exact module.qualname to trust."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: only when stderr is a terminal).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of the run.")
def predict(
    model: str,
    data: str,
    output: str,
    method: str,
    fmt: str | None,
    output_format: str | None,
    chunksize: int,
    text_column: str | None,
    keep: tuple[str, ...],
    ignore_extra: bool,
    trust: tuple[str, ...],
    progress: bool | None,
    as_json: bool,
) -> None:
    """Score DATA (CSV, Parquet or JSON lines; - for stdin) with MODEL into -o OUT.

    DATA is streamed in chunks, so memory stays flat however large it is. Its
    columns are checked against the input schema in the jar's header: missing,
    extra and mistyped columns are named (exit 2). A model fitted on a
    DataFrame takes its columns by name, in any order; one fitted on an array
    takes every column in file order; a text model (e.g. a TF-IDF pipeline)
    takes one text column: the only one, or --text-column NAME.

    \b
    Output columns: the --keep columns, then
      predict            prediction (prediction_0, … for several outputs)
      predict_proba      proba_<class> for every class
      decision_function  decision, or decision_<class>
      transform          the model's output feature names

    \b
    Examples:
      skjar predict model.skjar data.csv -o predictions.csv
      skjar predict model.skjar data.parquet -o scores.parquet --method predict_proba --keep id
      cat emails.jsonl | skjar predict spam.skjar - --format jsonl -o - --text-column body
      skjar predict model.skjar big.csv -o out.jsonl --chunksize 100000 --json
    """
    t0 = time.perf_counter()
    in_fmt = detect_format(data, fmt)
    out_fmt = detect_format(output, output_format)
    if output == "-" and as_json:
        raise InputError("--json prints a summary on stdout: write the predictions to a file (-o)")
    info = api.inspect(model)
    plan = InputPlan.from_schema(
        info.schema, text_column=text_column, keep=list(keep), ignore_extra=ignore_extra
    )
    reader = open_reader(data, in_fmt, chunksize, plan.str_columns(), all_str=plan.mode == "text")
    writer = None
    rows = 0
    try:
        chunks = reader.chunks()
        # Check the first chunk against the schema before paying for the load.
        first = next(chunks, None)
        if first is None or not len(first):
            raise InputError(f"{reader.name} has no rows: nothing to predict")
        plan.prepare(first, 0)
        estimator = api.load(model, trusted=list(trust))
        if not hasattr(estimator, method):
            offered = ", ".join(methods_of(estimator)) or "none of " + ", ".join(METHODS)
            raise InputError(
                f"{type(estimator).__name__} has no {method}(); it offers: {offered} (--method)"
            )
        call = getattr(estimator, method)
        load_s = time.perf_counter() - t0
        writer = open_writer(output, out_fmt)
        show = progress if progress is not None else is_terminal(sys.stderr)
        with progress_bar(reader, bool(show)) as update:
            for chunk in itertools.chain([first], chunks):
                if not len(chunk):
                    continue
                X = plan.prepare(chunk, rows)
                try:
                    result = call(X)
                except (ValueError, TypeError) as exc:
                    raise plan.diagnose(chunk, exc, rows) from exc
                out = output_frame(estimator, method, result)
                if keep:
                    import pandas as pd

                    out = pd.concat([chunk[list(keep)].reset_index(drop=True), out], axis=1)
                writer.write(out)
                rows += len(chunk)
                update(rows)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        reader.close()
    seconds = time.perf_counter() - t0
    summary = {
        "model": model,
        "data": reader.name,
        "output": "stdout" if output == "-" else output,
        "method": method,
        "input": plan.describe(),
        "rows": rows,
        "chunksize": chunksize,
        "load_seconds": load_s,
        "seconds": seconds,
        "rows_per_second": rows / max(seconds, 1e-9),
    }
    if reader.unit == "bytes" and reader.total:
        summary["input_bytes"] = reader.total
    if as_json:
        emit_json(summary)
    elif output != "-":
        size = f" ({human_bytes(reader.total)})" if reader.unit == "bytes" and reader.total else ""
        note(
            f"scored {rows:,} rows of {reader.name}{size} with {method}() in {seconds:.2f} s "
            f"({summary['rows_per_second']:,.0f} rows/s) -> {output}",
            style="green",
            err=True,
        )
