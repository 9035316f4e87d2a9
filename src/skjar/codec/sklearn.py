"""scikit-learn: meaning checks for state that Cython code indexes into."""

from __future__ import annotations
