"""EnvConfig: every setting of `PatchSelectionEnv`, with the paper's values as defaults.

The env's keyword arguments are this dataclass's fields. Front ends derive their flags
from it (`add_env_arguments`, `env_kwargs_from_args`) and their help text from the
field docstrings (`field_docs`), so a new setting is added in one place.

Values that can be checked without the data set are checked here (`__post_init__`); the
rest (patch size against the image size, batch size against the training set, the range
of `n_patch_desired`, whether CUDA is present) when the env is built.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import os
import re
import textwrap
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch

from patchenv.data import DATASETS, ImageData
from patchenv.env.rewards import RewardFn, weights_from_alpha

from patchenv.selector import SELECTIONS

OBS_TYPES = ("embeddings", "pooled", "attention", "progress")
REWARDS = ("paper", "progress")
AMP_MODES = ("bf16",)

# Field metadata. "run": a saved training run must share the value to be restored (part of
# the checkpoint's fingerprint); "vit": also a SimpleViT constructor argument; "cli": False
# for values a command line cannot give (a callable, or what the agent decides). "run":
# "if_set": part of the fingerprint only when it differs from the default, so checkpoints
# saved before the field existed (which all had the default) still load.
_RUN = {"run": True}
_RUN_IF_SET = {"run": "if_set"}
_VIT = {"run": True, "vit": True}
_NOT_CLI = {"cli": False}


@dataclass(frozen=True)
class EnvConfig:
    """Settings of `PatchSelectionEnv` (its keyword arguments); defaults are the paper's
    CIFAR-10 setup (docs/AGENTVIT.md). Frozen: an env reads its settings from here."""

    dataset: Union[str, ImageData] = field(default="cifar10", metadata={**_RUN, "choices": DATASETS})
    """data set: cifar10 (the paper), fashion_mnist, imagenette, digits (offline), synthetic (tests), or a loaded ImageData"""
    data_root: Optional[Union[str, os.PathLike]] = None
    """folder holding (or receiving) downloaded data sets; None = $PATCHENV_DATA or ~/.cache/patchenv"""
    download: bool = False
    """fetch a missing data set (cifar10, fashion_mnist, imagenette) into data_root"""
    batch_size: int = field(default=128, metadata=_RUN)
    """images per training step, B (paper: 128)"""
    patch_size: int = field(default=4, metadata=_VIT)
    """side of a square patch in pixels; N = (image side / patch_size)^2 patches (paper: 4, N = 64)"""
    image_size: Optional[int] = None
    """side the images are resized to on load, a multiple of patch_size; None = the data set's own (32; imagenette: 64)"""
    dim: int = field(default=128, metadata=_VIT)
    """token embedding width D (paper: 128)"""
    depth: int = field(default=6, metadata=_VIT)
    """transformer blocks (paper: 6)"""
    heads: int = field(default=16, metadata=_VIT)
    """attention heads per block (paper: 16)"""
    dim_head: int = field(default=64, metadata=_VIT)
    """width of each attention head (paper: 64)"""
    mlp_dim: int = field(default=512, metadata=_VIT)
    """hidden width of each block's feed-forward layer (paper: 512)"""
    lr: float = field(default=1e-3, metadata=_RUN)
    """constant Adam learning rate of the ViT (paper: 1e-3)"""
    selection: str = field(default="batch", metadata=_NOT_CLI)
    """batch: one mask (N,) shared by the batch (the paper); image: one mask per image (B, N); count: Discrete(N), action a keeps a + 1 patches per image, drawn uniformly at random for each image (keep-rate control)"""
    obs_type: Optional[str] = field(default=None, metadata=_NOT_CLI)
    """embeddings (B, N, D); pooled (N, D), their batch mean; attention (B, N), the paper's state; progress (PROGRESS_FEATURES,), how far training has got; None = progress for selection="count", else embeddings"""
    reward: str = field(default="paper", metadata={"choices": REWARDS})
    """paper: the notebook's loss and patch-count terms (alpha, loss_weight, patch_weight); progress: the probe's loss decrease per unit of compute (patchenv.env.progress; the probe is held out when val_fraction > 0, else a fixed training batch, with a warning)"""
    probe_size: int = 128
    """images in the probe: a fixed batch of the validation split (of the training set when there is none), evaluated with every patch for the progress observation and reward"""
    probe_every: int = 20
    """training steps between two evaluations of the probe (when the progress observation or reward needs it)"""
    alpha: Optional[float] = None
    """reward weights (loss_weight, patch_weight) = (alpha, 1 - alpha) (README `alpha`); None = the two weights"""
    loss_weight: float = 1.0
    """weight of the loss term L(ref)/L(t) in the reward (paper's code: 1)"""
    patch_weight: float = 20.0
    """weight of the patch term -|z - z*|/z* in the reward (paper's code: 20)"""
    n_patch_desired: int = 30
    """target count of kept patches per image; z* = N - n_patch_desired dropped (paper: 30)"""
    loss_ref_step: int = field(default=1, metadata=_NOT_CLI)
    """the run's training step (from 1) whose loss is the reward's reference L(ref); earlier steps are their own reference (loss term 1). 1 = the first step; AgentViT sets its `frequency` (the notebook's first rewarded batch)"""
    episode_steps: Optional[int] = None
    """training steps per episode; None = one epoch (training images // batch_size)"""
    action_repeat: int = 1
    """training steps one env.step runs with the same action (Gymnasium/ALE's frameskip): rewards summed, the last step's info with tokens and FLOPs summed and info["steps"]; it stops where the episode ends"""
    budget_epochs: Optional[float] = field(default=None, metadata=_NOT_CLI)
    """planned length of the run in epochs: the horizon schedules and progress-aware agents read (env.total_steps); the front ends set it from --epochs; None = unknown"""
    device: str = "auto"
    """where the data, the ViT and its training live: auto (CUDA when present), cpu, cuda or cuda:<index>"""
    reward_fn: Optional[RewardFn] = field(default=None, metadata=_NOT_CLI)
    """callable(StepStats) -> float that replaces the reward formula; None = the paper's reward"""
    tensor_obs: bool = field(default=False, metadata=_NOT_CLI)
    """observations as float32 torch tensors on the device instead of numpy (a GPU agent copies nothing)"""
    amp: Optional[str] = field(default=None, metadata={"choices": AMP_MODES})
    """bf16: bfloat16 autocast for the ViT's forward passes; None = float32"""
    compile: bool = False
    """torch.compile the ViT's transformer and head (dynamic shapes: the kept count varies)"""
    cuda_graph: Optional[bool] = field(default=None, metadata={"negatable": True})
    """replay each training step from a CUDA graph, one per kept count: removes the kernel-launch cost that bounds a small ViT's step on a fast GPU. None = on CUDA unless compile is set, off on the CPU; True: CUDA only; False: eager"""
    eval_batch_size: int = 500
    """images per batch of evaluate() with all patches (memory use, not results)"""
    val_fraction: float = field(default=0.0, metadata=_RUN_IF_SET)
    """share of the training set held out as a validation split for evaluate("val"), in [0, 1): round(val_fraction * training images), a fixed random subset, the same for every run and seed (patchenv.env.VAL_SPLIT_SEED), removed from the images trained on; 0 = no split (the paper's protocol)"""
    eval_fraction: float = 1.0
    """share of the test split evaluate() uses, in (0, 1]: a fixed random subset, the same for every run and seed (patchenv.env.EVAL_SUBSET_SEED); 1 = the whole split, 0.95 = the notebook's 9,500 CIFAR-10 images"""
    render_mode: Optional[str] = field(default=None, metadata=_NOT_CLI)
    """"rgb_array": render() returns the batch just trained with its dropped patches greyed; None = no rendering"""

    def __post_init__(self):
        if isinstance(self.dataset, str):
            if self.dataset not in DATASETS:
                raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {', '.join(DATASETS)}")
        elif not isinstance(self.dataset, ImageData):
            raise ValueError(f"dataset must be a name ({', '.join(DATASETS)}) or an ImageData, "
                             f"got {type(self.dataset).__name__}")
        if self.data_root is not None and not isinstance(self.data_root, (str, os.PathLike)):
            raise ValueError(f"data_root must be a path or None, got {self.data_root!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.obs_type is None:
            self._set("obs_type", "progress" if self.selection == "count" else "embeddings")
        if self.obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES} or None, got {self.obs_type!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.reward == "progress" and self.reward_fn is not None:
            raise ValueError("reward='progress' and reward_fn are alternatives: reward_fn replaces the reward")
        if self.amp is not None and self.amp not in AMP_MODES:
            raise ValueError(f"amp must be None or 'bf16', got {self.amp!r}")
        for name in ("batch_size", "patch_size", "dim", "depth", "heads", "dim_head", "mlp_dim", "eval_batch_size",
                     "probe_size", "probe_every"):
            self._set(name, _positive_int(name, getattr(self, name)))
        if self.image_size is not None:  # that patch_size divides it is checked with the data set
            self._set("image_size", _positive_int("image_size", self.image_size, "or None"))
            if isinstance(self.dataset, ImageData) and self.dataset.image_size != self.image_size:
                raise ValueError(f"image_size {self.image_size} differs from the given ImageData's "
                                 f"{self.dataset.image_size}; leave image_size None for a loaded data set")
        if self.episode_steps is not None:
            self._set("episode_steps", _positive_int("episode_steps", self.episode_steps, "or None"))
        # Its range [1, N - 1] needs N, known once the data set is: checked by the env.
        if not _is_int(self.n_patch_desired):
            raise ValueError(f"n_patch_desired must be an integer, got {self.n_patch_desired!r}")
        self._set("n_patch_desired", int(self.n_patch_desired))
        self._set("loss_ref_step", _positive_int("loss_ref_step", self.loss_ref_step))
        if not (_is_real(self.lr) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        self._set("lr", float(self.lr))
        for name in ("loss_weight", "patch_weight"):
            if not (_is_real(getattr(self, name)) and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
            self._set(name, float(getattr(self, name)))
        if self.alpha is not None:
            if not _is_real(self.alpha):
                raise ValueError(f"alpha must be a number in [0, 1] or None, got {self.alpha!r}")
            weights_from_alpha(self.alpha)  # raises for a value outside [0, 1]
            self._set("alpha", float(self.alpha))
        if not (_is_real(self.eval_fraction) and 0 < self.eval_fraction <= 1):
            raise ValueError(f"eval_fraction must be a number in (0, 1], got {self.eval_fraction!r}")
        self._set("eval_fraction", float(self.eval_fraction))
        if not (_is_real(self.val_fraction) and 0 <= self.val_fraction < 1):
            raise ValueError(f"val_fraction must be a number in [0, 1), got {self.val_fraction!r}")
        self._set("val_fraction", float(self.val_fraction))
        check_device(self.device)
        if self.reward_fn is not None and not callable(self.reward_fn):
            raise ValueError(f"reward_fn must be a callable(StepStats) -> float or None, got {self.reward_fn!r}")
        if self.budget_epochs is not None and (not _is_real(self.budget_epochs) or not self.budget_epochs > 0
                                               or not math.isfinite(self.budget_epochs)):
            raise ValueError(f"budget_epochs must be a positive number or None, got {self.budget_epochs!r}")
        if isinstance(self.action_repeat, bool) or not isinstance(self.action_repeat, (int, np.integer)) \
                or self.action_repeat < 1:
            raise ValueError(f"action_repeat must be an integer >= 1, got {self.action_repeat!r}")
        self._set("action_repeat", int(self.action_repeat))
        if self.render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {self.render_mode!r}")
        for name in ("download", "tensor_obs", "compile"):
            self._set(name, bool(getattr(self, name)))
        if self.cuda_graph is not None:
            self._set("cuda_graph", bool(self.cuda_graph))
        if self.compile and self.cuda_graph:
            raise ValueError("compile and cuda_graph are alternatives (each removes the per-kernel launch cost "
                             "its own way); pick one")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # the dataclass is frozen; only __post_init__ normalises

    @property
    def reward_weights(self) -> tuple[float, float]:
        """(loss_weight, patch_weight) in effect: from `alpha` when it is set."""
        if self.alpha is not None:
            return weights_from_alpha(self.alpha)
        return self.loss_weight, self.patch_weight

    def vit_config(self, *, image_size: int, num_classes: int, channels: int) -> dict:
        """`SimpleViT` keyword arguments for images of this side, class count and channels."""
        vit = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("vit")}
        return dict(image_size=image_size, num_classes=num_classes, channels=channels, **vit)

    def fingerprint(self, *, dataset_name: str, image_size: int, num_classes: int, channels: int) -> dict:
        """What a saved training run must share with the env that restores it: the data
        set's name and the "run" fields (batch size, lr, the ViT's size and geometry; the
        validation split when there is one)."""
        run = {f.name: getattr(self, f.name) for f in fields(self)
               if f.metadata.get("run") is True
               or (f.metadata.get("run") == "if_set" and getattr(self, f.name) != f.default)}
        run["dataset"] = dataset_name  # the name, also when an ImageData was passed
        return {**run, **self.vit_config(image_size=image_size, num_classes=num_classes, channels=channels)}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _positive_int(name: str, value: Any, alternative: str = "") -> int:
    if not (_is_int(value) and value > 0):
        raise ValueError(f"{name} must be a positive integer{' ' + alternative if alternative else ''}, got {value!r}")
    return int(value)


def check_device(device: Union[str, torch.device]) -> None:
    """Raise a ValueError unless `device` is "auto" or names a CPU or CUDA device (whether
    CUDA is present is the env's question: `patchenv.env.resolve_device`)."""
    if str(device) == "auto":
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")


# -- help text and command-line flags, derived from the fields ------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string literal under it) in `cls`'s source,
    whitespace collapsed: {name: doc}. Fields without one are left out."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source shipped (a frozen app): help loses its text, nothing else
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


_WORDS = {int: "an integer", float: "a number", str: "a string"}


def _cli_fields() -> list[dataclasses.Field]:
    return [f for f in fields(EnvConfig) if f.metadata.get("cli", True)]


def _cli_type(f: dataclasses.Field) -> type:
    """The command-line type of a field: bool (a switch), int, float or str."""
    hint = typing.get_type_hints(EnvConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for t in (bool, int, float, str):
        if t in args:
            return t
    raise TypeError(f"EnvConfig.{f.name} ({hint}) has no command-line form; mark it {_NOT_CLI}")


def _parser_for(name: str, convert: type):
    """argparse `type`: convert the text, then validate the value as EnvConfig would, so a
    bad value is an argparse error that names the flag and says what was expected."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_WORDS[convert]}, got {text!r}") from None
        try:
            EnvConfig(**{name: value})
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    parse.__name__ = convert.__name__
    return parse


def add_env_arguments(parser: argparse.ArgumentParser, include: Optional[Iterable[str]] = None,
                      front_end_defaults: Optional[dict] = None) -> argparse.ArgumentParser:
    """Add a flag for each command-line field of `EnvConfig` (``--batch-size`` for
    ``batch_size``; `include` = the field names wanted, default all), typed from the
    field, with its docstring as help. Every flag defaults to None, so a front end can
    tell "not given" from a value and fill in its own defaults or a preset's; collect the
    given ones with `env_kwargs_from_args`. `front_end_defaults` names the values a front
    end fills in itself when a flag is not given (e.g. ``{"dataset": "digits"}``), for the
    help text. Returns `parser`."""
    cli = {f.name: f for f in _cli_fields()}
    names = list(cli) if include is None else list(include)
    unknown = [n for n in names if n not in cli]
    if unknown:
        raise ValueError(f"no command-line flag for {unknown}; expected names among {sorted(cli)}")
    docs = field_docs(EnvConfig)
    for name in names:
        f = cli[name]
        flag = "--" + name.replace("_", "-")
        default = (front_end_defaults or {}).get(name, f.default)
        shown = "" if default is None or default is False else f" (default: {default})"  # unset, a switch off
        help_text = (_command_line_words(docs.get(name, "")) + shown).replace("%", "%%")
        kind = _cli_type(f)
        if kind is bool and f.metadata.get("negatable"):  # --flag / --no-flag; neither: the default
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=_parser_for(name, kind), default=None,
                                choices=f.metadata.get("choices"), help=help_text)
    return parser


def _command_line_words(doc: str) -> str:
    """A field's docstring as a flag's help: no Python values or markup a command line
    cannot give (a loaded ImageData, None, ``code``)."""
    doc = re.sub(r",? or a loaded ImageData", "", doc)
    doc = re.sub(r"\bNone = ", "unset: ", doc).replace("None", "unset")
    return doc.replace("``", "").replace("`", "")


def env_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The env keyword arguments given on the command line (flags of `add_env_arguments`
    that are neither None nor False, a ``--no-`` flag's False kept); other attributes of
    `args` are ignored."""
    given = {}
    for f in _cli_fields():
        value = getattr(args, f.name, None)
        if value is not None and (value is not False or f.metadata.get("negatable")):
            given[f.name] = value
    return given


def keyword_signature() -> inspect.Signature:
    """``PatchSelectionEnv(**kwargs)`` as it is called: ``preset`` and EnvConfig's fields as
    keyword-only parameters with their defaults, for help(), inspect and editors."""
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(EnvConfig).parameters.values()]
    preset = inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Optional[str]")
    return inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), preset, *params])
