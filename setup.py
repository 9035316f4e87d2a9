"""Build the optional compiled helpers; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and skjar
uses the pure-Python twins of these loops (same results, slower loads).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "skjar._speedups",
            [f"src/skjar/{name}.c" for name in ("_speedups", "_walk", "_json", "_front")],
            optional=True,
        ),
    ]
)
