"""``--grid KEY=V1,V2 ...``: the env settings a sweep crosses with its selectors and seeds.

Each value is converted and checked by the argparse action of the flag it stands for
(``--alpha``, ``--preset``, ...), so a grid value means what the same flag would mean.
"""
from __future__ import annotations

import argparse
import dataclasses

from benchmarks.common import parse_list
from patchenv.env.config import EnvConfig

# --grid keys besides the env's own flags (EnvConfig fields).
GRID_EXTRA_KEYS = ("preset",)


def grid_actions(parser: argparse.ArgumentParser) -> dict:
    """The parser's actions a grid key may name: every env flag, and the preset."""
    env_keys = {f.name for f in dataclasses.fields(EnvConfig)}
    return {a.dest: a for a in parser._actions if a.dest in env_keys or a.dest in GRID_EXTRA_KEYS}


def parse_grid(texts, actions: dict) -> dict:
    """``--grid KEY=V1,V2 ...`` -> {key: [values]}, in the order given, each value converted
    and checked as its own flag (``--KEY``, its action in `actions`) converts and checks it."""
    grid = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--grid expects KEY=V1,V2,..., got {text!r}")
        if key not in actions:
            raise ValueError(f"--grid: unknown key {key!r}; expected preset or an env flag's name: "
                             f"{', '.join(sorted(actions))}")
        if key in grid:
            raise ValueError(f"--grid: {key} given twice; give all its values at once, {key}=V1,V2")
        items = parse_list(values)
        if not items:
            raise ValueError(f"--grid {key}: no values; expected {key}=V1,V2,...")
        typed = [grid_value(actions[key], key, item) for item in items]
        if len({repr(v) for v in typed}) < len(typed):
            raise ValueError(f"--grid {key}: a value is listed twice ({values})")
        grid[key] = typed
    return grid


def grid_value(action: argparse.Action, key: str, text: str):
    """One grid value, as `action` (its flag's) would parse it."""
    if action.nargs == 0:  # a switch (--download, --compile, ...)
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.lower() not in words:
            raise ValueError(f"--grid {key}: expected true or false, got {text!r}")
        return words[text.lower()]
    value = text
    if action.type is not None:
        try:
            value = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            raise ValueError(f"--grid {key}={text}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"--grid {key}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def grid_text(grid: dict) -> str:
    """The grid for titles: ``alpha=0.3,0.7 x preset=tiny,small``."""
    return " x ".join(f"{k}={','.join(map(str, values))}" for k, values in grid.items())
