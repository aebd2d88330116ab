"""Builds the proxy's compiled fast lane (``meshpilot/proxy/_fastpath.pyx``); everything else is
declared in pyproject.toml. Without a C compiler the extension is skipped and the proxy runs its
interpreted lane alone (``MESHPILOT_REQUIRE_FASTPATH=1`` makes that an error instead)."""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler or no Python headers
            if os.environ.get("MESHPILOT_REQUIRE_FASTPATH") == "1":
                raise
            print(f"warning: the proxy's fast lane was not compiled ({e}); the proxy will be slower")


def extensions():
    from Cython.Build import cythonize

    return cythonize(
        ["meshpilot/proxy/_fastpath.pyx"],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
