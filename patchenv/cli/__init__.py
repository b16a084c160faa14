"""The command line: ``patchenv train`` and ``patchenv agents`` (`main`), and the flags
every front end shares (`options`: ``compare_selectors`` and sweeps use them too)."""
from patchenv.cli.main import build_parser, main, train

__all__ = ["build_parser", "main", "train"]
