"""Fit a chunk of input rows to the model's input schema (read from the jar's header).

Three ways a model takes input, decided from the schema ``inspect`` reports:

* **named** — fitted on a DataFrame (``feature_names_in``): the data must have
  exactly those columns (any order; ``--keep`` columns are copied to the output,
  ``--ignore-extra`` drops the rest); each column's values must fit the dtype
  the header records (``number``, ``category[str]``…).
* **array** — fitted on an array (``n_features_in`` only): every column except
  the kept ones, in file order, and exactly ``n_features_in`` of them.
* **text** — no feature count at all (a ``TfidfVectorizer`` pipeline): one text
  column — the only (non-kept) column, or the one named by ``--text-column``.

>>> plan = InputPlan.from_schema({"feature_names_in": ["a", "b"], "n_features_in": 2})
>>> plan.mode
'named'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._render import InputError

MAX_NAMES = 20


def _names(cols: list[str], limit: int = MAX_NAMES) -> str:
    shown = ", ".join(repr(c) for c in cols[:limit])
    return shown + (f", … ({len(cols)} in all)" if len(cols) > limit else "")


@dataclass
class InputPlan:
    """How to turn a DataFrame chunk into what the model's methods take."""

    mode: str  # "named" | "array" | "text"
    features: list[str] = field(default_factory=list)
    dtypes: dict[str, str] = field(default_factory=dict)
    n_features: int | None = None
    text_column: str | None = None
    keep: list[str] = field(default_factory=list)
    ignore_extra: bool = False
    skip: frozenset[str] = frozenset()  # columns that are never features (e.g. the target)

    @classmethod
    def from_schema(
        cls,
        schema: dict[str, Any],
        *,
        text_column: str | None = None,
        keep: list[str] | None = None,
        ignore_extra: bool = False,
        skip: frozenset[str] = frozenset(),
    ) -> InputPlan:
        """The plan for a jar's ``Info.schema``."""
        keep = list(keep or [])
        names = schema.get("feature_names_in")
        n = schema.get("n_features_in")
        if isinstance(names, list) and names:
            if text_column:
                raise InputError(
                    "--text-column is for text models; this model takes named columns: "
                    + _names([str(x) for x in names])
                )
            dtypes = schema.get("feature_dtypes")
            return cls(
                "named",
                features=[str(x) for x in names],
                dtypes=dict(dtypes) if isinstance(dtypes, dict) else {},
                n_features=len(names),
                keep=keep,
                ignore_extra=ignore_extra,
                skip=skip,
            )
        if isinstance(n, int):
            if text_column:
                raise InputError(
                    f"--text-column is for text models; this model takes {n} numeric columns"
                )
            return cls("array", n_features=n, keep=keep, ignore_extra=ignore_extra, skip=skip)
        return cls("text", text_column=text_column, keep=keep, skip=skip)

    def str_columns(self) -> frozenset[str]:
        """Columns to read as text, whatever they look like (categories of strings)."""
        return frozenset(c for c, d in self.dtypes.items() if d == "category[str]")

    def describe(self) -> str:
        if self.mode == "named":
            return f"{len(self.features)} named columns"
        if self.mode == "array":
            return f"{self.n_features} columns in file order"
        return f"text column {self.text_column!r}" if self.text_column else "one text column"

    # -- fitting a chunk ----------------------------------------------------
    def prepare(self, df: Any, first_row: int = 0) -> Any:
        """``X`` for the model from chunk ``df`` (whose first row is data row ``first_row + 1``).

        Raises InputError naming missing, extra and mistyped columns.
        """
        self._check_keep(df)
        if self.mode == "named":
            return self._named(df, first_row)
        if self.mode == "array":
            return self._array(df)
        return self._text(df)

    def _check_keep(self, df: Any) -> None:
        missing = [c for c in self.keep if c not in df.columns]
        if missing:
            raise InputError(
                f"--keep column(s) not in the data: {_names(missing)}; "
                f"the data has {_names([str(c) for c in df.columns])}"
            )

    def _named(self, df: Any, first_row: int) -> Any:
        cols = [str(c) for c in df.columns]
        present = set(cols)
        wanted = set(self.features)
        missing = [f for f in self.features if f not in present]
        extra = [c for c in cols if c not in wanted and c not in self.keep and c not in self.skip]
        if missing or (extra and not self.ignore_extra):
            lines = ["the data's columns do not match the model's input"]
            if missing:
                lines.append(f"  missing: {_names(missing)}")
            if extra and not self.ignore_extra:
                lines.append(
                    f"  extra: {_names(extra)} (copy a column to the output with --keep COL, "
                    "or drop the rest with --ignore-extra)"
                )
            hints = _near_misses(missing, extra)
            if hints:
                lines.append("  did you mean: " + ", ".join(f"{a!r} for {b!r}" for a, b in hints))
            lines.append(f"  the model expects: {_names(self.features)}")
            raise InputError("\n".join(lines))
        X = df.loc[:, self.features].copy() if list(df.columns) != self.features else df
        self._fit_dtypes(X, first_row)
        return X

    def _fit_dtypes(self, X: Any, first_row: int) -> None:
        import pandas as pd

        problems = []
        for col, kind in self.dtypes.items():
            if col not in X.columns:
                continue
            s = X[col]
            if kind == "category[str]":
                if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
                    X[col] = s.astype(object).where(s.isna(), s.astype(str))
                continue
            if kind == "number" or (kind.startswith("category[") and kind != "category[str]"):
                if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                    continue
                converted = pd.to_numeric(s, errors="coerce")
                bad = converted.isna() & s.notna()
                if bool(bad.any()):
                    pos = int(bad.to_numpy().argmax())
                    want = "numbers" if kind == "number" else f"values of {kind}"
                    problems.append(
                        f"  {col!r}: the model needs {want}, found {s.iloc[pos]!r} "
                        f"in data row {first_row + pos + 1} ({int(bad.sum())} such value(s) "
                        "in this chunk)"
                    )
                else:
                    X[col] = converted
        if problems:
            raise InputError("mistyped column(s):\n" + "\n".join(problems))

    def _array(self, df: Any) -> Any:
        cols = [c for c in df.columns if c not in self.keep and c not in self.skip]
        if len(cols) != self.n_features:
            raise InputError(
                f"the model was fitted on an array of {self.n_features} columns; the data has "
                f"{len(cols)} (besides --keep): {_names([str(c) for c in cols])}. Columns are "
                "taken in file order; leave out the others, or name them with --keep."
            )
        return df.loc[:, cols].to_numpy()

    def _text(self, df: Any) -> Any:
        cols = [str(c) for c in df.columns]
        if self.text_column is None:
            candidates = [c for c in cols if c not in self.keep and c not in self.skip]
            if len(candidates) != 1:
                raise InputError(
                    "this model takes one text column (it was fitted on a list of texts), "
                    f"and the data has {len(candidates)} candidate column(s): "
                    f"{_names(candidates)}. Choose one with --text-column NAME."
                )
            self.text_column = candidates[0]
        if self.text_column not in cols:
            raise InputError(
                f"--text-column {self.text_column!r} is not in the data; it has {_names(cols)}"
            )
        s = df[self.text_column]
        return s.where(s.notna(), "").astype(str).to_numpy(dtype=object)

    def diagnose(self, df: Any, exc: BaseException, first_row: int) -> InputError:
        """An InputError explaining why the model rejected the chunk (text in numeric columns…)."""
        import pandas as pd

        message = (
            f"the model could not use data rows {first_row + 1} to {first_row + len(df)}: {exc}"
        )
        hints = []
        for col in df.columns:
            if col in self.keep or col in self.skip or self.mode == "text":
                continue
            s = df[col]
            if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                continue
            converted = pd.to_numeric(s, errors="coerce")
            bad = converted.isna() & s.notna()
            if bool(bad.any()):
                pos = int(bad.to_numpy().argmax())
                hints.append(f"{col!r} (e.g. {s.iloc[pos]!r} in data row {first_row + pos + 1})")
        if hints:
            message += "\n  columns holding text where numbers may be needed: " + ", ".join(hints)
        return InputError(message)


def _near_misses(missing: list[str], extra: list[str]) -> list[tuple[str, str]]:
    """Pairs (extra, missing) that differ only by case or surrounding spaces."""
    norm = {m.strip().lower(): m for m in missing}
    return [(e, norm[e.strip().lower()]) for e in extra if e.strip().lower() in norm]
