"""Build the optional compiled helpers; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and skjar
uses the pure-Python twins of these loops (same results, slower loads).
"""

import platform

from setuptools import Extension, setup

sources = [f"src/skjar/{name}.c" for name in ("_speedups", "_walk", "_json", "_front", "_digest", "_pack", "_encode", "_objpool", "_write", "_json_dump")]
macros = []
if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
    # XXH3's update picks SSE2, AVX2 or AVX-512 at run time (baseline flags only).
    sources.append("src/skjar/_vendor/xxh_x86dispatch.c")
    macros.append(("SKJAR_XXH_DISPATCH", "1"))

setup(
    ext_modules=[
        Extension(
            "skjar._speedups",
            sources,
            define_macros=macros,
            depends=["src/skjar/_vendor/xxhash.h", "src/skjar/_hot.h", "src/skjar/_bytes.h"],
            optional=True,
        ),
    ]
)
