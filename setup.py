"""Build the optional compiled helpers; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and skjar
uses the pure-Python twins of these loops (same results, slower loads).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("skjar._speedups", ["src/skjar/_speedups.c", "src/skjar/_walk.c", "src/skjar/_json.c"], optional=True),
    ]
)
