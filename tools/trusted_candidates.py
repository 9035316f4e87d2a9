"""Print candidate names for src/skjar/_trusted_names.py, for a human to review.

    python tools/trusted_candidates.py > /tmp/candidates.txt

Sources: every estimator class in sklearn.utils.all_estimators(), every numpy
ufunc, and every name the conformance suite's models reference when dumped.
Nothing is trusted by running this: the output is reviewed and pasted by hand,
so a new scikit-learn internal type is a deliberate decision.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
warnings.simplefilter("ignore")


def main() -> None:
    from sklearn.experimental import enable_halving_search_cv, enable_iterative_imputer  # noqa: F401
    from sklearn.utils import all_estimators

    from skjar.codec import Encoder

    estimators = sorted(f"{c.__module__}:{c.__qualname__}" for _, c in all_estimators())
    print("# estimators", len(estimators))
    for e in estimators:
        print(f"    {e!r},")
    ufuncs = sorted(n for n in dir(np) if isinstance(getattr(np, n), np.ufunc))
    print("# ufuncs", len(ufuncs))
    print("    " + ", ".join(repr(u) for u in ufuncs))

    from conformance.cases import all_estimator_cases, composite_cases

    cases, _ = all_estimator_cases()
    seen: dict[str, set[str]] = {}
    for case in [*cases, *composite_cases()]:
        try:
            est, _ = case.make()
            enc = Encoder()
            enc.encode_root(est)
        except Exception as exc:  # report, keep going
            print(f"# {case.id}: {type(exc).__name__}: {exc}")
            continue
        for name, (module, uses) in enc.names.items():
            qual = name[len(module) + 1 :]
            for use in uses:
                seen.setdefault(use, set()).add(f"{module}:{qual}")
    for use, names in sorted(seen.items()):
        print(f"# used as {use}: {len(names)}")
        for n in sorted(names):
            if n not in estimators:
                print(f"    {n!r},")


if __name__ == "__main__":
    main()
