"""The ``xsa-enhance`` command-line interface.

Each stage has its own module under ``xsa_enhance.cli`` defining click commands; they are
registered on the :func:`main` group in :mod:`xsa_enhance.cli.main`. Logging is configured
here and nowhere else in the package.
"""

from xsa_enhance.cli.main import main

__all__ = ["main"]
