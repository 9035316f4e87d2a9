"""scipy.sparse: meaning checks for the index arrays compiled code will follow."""

from __future__ import annotations
