"""EnvConfig: the paper's defaults, documented fields, validation, the checkpoint
fingerprint, and the command-line flags derived from the fields."""
import argparse
import dataclasses
import json
from dataclasses import dataclass, fields

import numpy as np
import pytest

from patchenv.env.config import EnvConfig, _command_line_words, add_env_arguments, env_kwargs_from_args, field_docs
from patchenv.data import synthetic
from patchenv.env import PatchSelectionEnv

# What a saved run had to share before EnvConfig existed (checkpoint format v0, kept in
# v1): the fingerprint must keep exactly these keys, or the checkpoints stop loading.
RUN_FIELDS = {"dataset", "batch_size", "lr", "patch_size", "dim", "depth", "heads", "dim_head", "mlp_dim"}
# Fields added later that change what a run trains on: in the fingerprint only when they
# differ from their default, so the checkpoints saved before them (all at the default) load.
RUN_FIELDS_WHEN_SET = {"val_fraction"}
DATA_SHAPE = dict(image_size=32, num_classes=10, channels=3)
# The flags the front ends (patchenv train, compare_selectors) expect.
FLAGS = ("--batch-size", "--lr", "--dim", "--depth", "--heads", "--dim-head", "--mlp-dim", "--patch-size", "--alpha",
         "--loss-weight", "--patch-weight", "--n-patch-desired", "--episode-steps", "--amp", "--compile",
         "--eval-batch-size", "--device", "--data-root", "--download", "--dataset", "--reward", "--probe-size",
         "--probe-every")
NOT_FLAGS = ("--reward-fn", "--selection", "--obs-type", "--tensor-obs")


def parser(include=None):
    return add_env_arguments(argparse.ArgumentParser(prog="front-end"), include)


def fingerprint(cfg, dataset_name="cifar10"):
    return cfg.fingerprint(dataset_name=dataset_name, **DATA_SHAPE)


# -- defaults and docs -------------------------------------------------------------------------
def test_defaults_are_the_papers():
    cfg = EnvConfig()
    paper = dict(dataset="cifar10", batch_size=128, patch_size=4, dim=128, depth=6, heads=16, dim_head=64,
                 mlp_dim=512, lr=1e-3, n_patch_desired=30, loss_weight=1.0, patch_weight=20.0, selection="batch",
                 alpha=None)  # docs/AGENTVIT.md
    assert {k: getattr(cfg, k) for k in paper} == paper
    assert cfg.reward_weights == (1.0, 20.0)
    assert EnvConfig(alpha=0.3).reward_weights == pytest.approx((0.3, 0.7))


def test_every_field_has_a_one_line_docstring():
    docs = field_docs(EnvConfig)
    assert set(docs) == {f.name for f in fields(EnvConfig)}
    for name, doc in docs.items():
        assert doc and "\n" not in doc and len(doc) > 15, name


def test_field_docs_reads_any_dataclass():
    @dataclass
    class Example:
        a: int = 1
        """the first
        setting, over two lines"""
        b: float = 2.0
        c: str = "x"
        """the third"""

    assert field_docs(Example) == {"a": "the first setting, over two lines", "c": "the third"}


def test_frozen_and_normalised():
    cfg = EnvConfig(batch_size=np.int64(32), lr=np.float32(0.5), alpha=1, n_patch_desired=np.int16(20))
    assert type(cfg.batch_size) is int and type(cfg.lr) is float and type(cfg.alpha) is float
    assert type(cfg.n_patch_desired) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    json.dumps(fingerprint(cfg))  # plain Python values: results files can carry it


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,words", [
    (dict(selection="pixel"), "selection"), (dict(obs_type="raw"), "embeddings"), (dict(amp="fp8"), "bf16"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=2.5), "batch_size"), (dict(batch_size=True), "batch_size"),
    (dict(dim=-4), "dim"), (dict(eval_batch_size=0), "eval_batch_size"), (dict(episode_steps=0), "episode_steps"),
    (dict(lr=0), "lr"), (dict(lr=float("inf")), "lr"), (dict(lr="fast"), "lr"), (dict(alpha=1.5), "alpha"),
    (dict(alpha="half"), "alpha"), (dict(loss_weight=float("nan")), "loss_weight"),
    (dict(n_patch_desired=2.0), "n_patch_desired"), (dict(device="tpu"), "cpu"), (dict(device="cuda:x"), "device"),
    (dict(dataset="imagenet"), "digits"), (dict(dataset=42), "dataset"), (dict(reward_fn=3), "reward_fn"),
    (dict(data_root=5), "data_root"),
])
def test_bad_values_give_a_one_line_value_error(kwargs, words):
    with pytest.raises(ValueError, match=words) as e:
        EnvConfig(**kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "50"])
def test_loss_ref_step_is_a_positive_integer(value):
    with pytest.raises(ValueError, match="loss_ref_step must be a positive integer"):
        EnvConfig(loss_ref_step=value)
    assert EnvConfig().loss_ref_step == 1 and type(EnvConfig(loss_ref_step=np.int32(50)).loss_ref_step) is int
    # The agent decides it (AgentViT: its frequency), so no flag that its env_kwargs would override.
    assert "--loss-ref-step" not in parser().format_help()


@pytest.mark.parametrize("value", [0, 0.0, -0.5, 1.01, float("nan"), "all", True])
def test_eval_fraction_is_in_zero_one(value):
    with pytest.raises(ValueError, match=r"eval_fraction must be a number in \(0, 1\]"):
        EnvConfig(eval_fraction=value)
    assert EnvConfig().eval_fraction == 1.0 and type(EnvConfig(eval_fraction=1).eval_fraction) is float


@pytest.mark.parametrize("value", [-0.1, 1, 1.0, float("nan"), "0.1", True, None])
def test_val_fraction_is_in_zero_one(value):
    with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 1\)"):
        EnvConfig(val_fraction=value)
    assert EnvConfig().val_fraction == 0.0 and type(EnvConfig(val_fraction=0).val_fraction) is float
    assert EnvConfig(val_fraction=np.float32(0.25)).val_fraction == 0.25
    assert env_kwargs_from_args(parser().parse_args(["--val-fraction", "0.1"])) == {"val_fraction": 0.1}


def test_values_that_need_the_data_set_are_left_to_the_env():
    """n_patch_desired's range needs N and patch_size must divide the image side: the config
    keeps them as given and the env, which knows the images, refuses them."""
    images = synthetic(n_train=8, n_test=4)
    cfg = EnvConfig(n_patch_desired=10_000, patch_size=7, device="cuda:1", dataset=images)
    assert (cfg.n_patch_desired, cfg.patch_size, cfg.device) == (10_000, 7, "cuda:1")
    small = dict(dataset=images, batch_size=4, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32, device="cpu")
    with pytest.raises(ValueError, match="patch_size 7 must divide the image size 32"):
        PatchSelectionEnv(**small, patch_size=7)
    with pytest.raises(ValueError, match=r"n_patch_desired must be an integer in \[1, 63\], got 10000"):
        PatchSelectionEnv(**small, n_patch_desired=10_000)


# -- fingerprint -------------------------------------------------------------------------------
def test_fingerprint_keys_are_the_checkpoint_formats():
    assert set(fingerprint(EnvConfig())) == RUN_FIELDS | set(DATA_SHAPE)
    assert set(fingerprint(EnvConfig(val_fraction=0.1))) == RUN_FIELDS | set(DATA_SHAPE) | {"val_fraction"}
    assert fingerprint(EnvConfig(val_fraction=0.1))["val_fraction"] == 0.1
    assert fingerprint(EnvConfig(dataset=synthetic(n_train=8, n_test=4)), "synthetic")["dataset"] == "synthetic"


OTHER_VALUES = dict(dataset="digits", data_root="/elsewhere", download=True, batch_size=64, patch_size=8,
                    image_size=64, dim=64,
                    depth=2, heads=4, dim_head=32, mlp_dim=128, lr=1e-2, selection="image", obs_type="pooled",
                    alpha=0.5, loss_weight=2.0, patch_weight=1.0, n_patch_desired=10, episode_steps=7, action_repeat=3,
                    device="cpu",
                    reward_fn=lambda stats: 0.0, tensor_obs=True, amp="bf16", compile=True, cuda_graph=True,
                    eval_batch_size=50, loss_ref_step=50, eval_fraction=0.95, val_fraction=0.1,
                    render_mode="rgb_array", budget_epochs=3.0, reward="progress", probe_size=64, probe_every=5)


@pytest.mark.parametrize("name", [f.name for f in fields(EnvConfig)])
def test_fingerprint_changes_with_run_defining_fields_only(name):
    assert set(OTHER_VALUES) == {f.name for f in fields(EnvConfig)}
    base, changed = EnvConfig(), EnvConfig(**{name: OTHER_VALUES[name]})
    # The data set enters by name (an ImageData may be passed), so the caller names it.
    names = ("cifar10", "digits") if name == "dataset" else ("cifar10", "cifar10")
    differs = fingerprint(base, names[0]) != fingerprint(changed, names[1])
    assert differs == (name in RUN_FIELDS | RUN_FIELDS_WHEN_SET), name
    # The image geometry and the class count are the data's and count as well.
    for key in DATA_SHAPE:
        assert base.fingerprint(dataset_name="cifar10", **{**DATA_SHAPE, key: 1}) != fingerprint(base)


# -- command-line flags --------------------------------------------------------------------------
def test_flags_appear_with_their_docs_in_help():
    text = " ".join(parser().format_help().split())  # argparse wraps lines
    docs = field_docs(EnvConfig)
    for flag in FLAGS:
        assert flag in text, flag
        assert " ".join(_command_line_words(docs[flag[2:].replace("-", "_")]).split()) in text, flag
    for flag in NOT_FLAGS:
        assert flag not in text
    assert "(default: 128)" in text and "(default: 0.001)" in text
    # a command line cannot give Python's words: they are said the command line's way
    assert "ImageData" not in text and "None" not in text and "`" not in text and "(default: False)" not in text
    assert "--cuda-graph, --no-cuda-graph" in text


def test_help_words_leave_out_what_a_command_line_cannot_give():
    assert _command_line_words("data set: x, or a loaded ImageData") == "data set: x"
    assert _command_line_words("None = the data set's own; ``bf16``: `fast`") == "unset: the data set's own; bf16: fast"


def test_parse_round_trip():
    argv = ["--batch-size", "32", "--lr", "0.01", "--dim", "64", "--depth", "2", "--heads", "4", "--dim-head", "16",
            "--mlp-dim", "128", "--patch-size", "8", "--alpha", "0.3", "--loss-weight", "2", "--patch-weight", "5",
            "--n-patch-desired", "12", "--episode-steps", "9", "--amp", "bf16", "--compile", "--eval-batch-size", "50",
            "--device", "cpu", "--data-root", "/data", "--download", "--dataset", "digits"]
    kwargs = env_kwargs_from_args(parser().parse_args(argv))
    assert kwargs == dict(batch_size=32, lr=0.01, dim=64, depth=2, heads=4, dim_head=16, mlp_dim=128, patch_size=8,
                          alpha=0.3, loss_weight=2.0, patch_weight=5.0, n_patch_desired=12, episode_steps=9,
                          amp="bf16", compile=True, eval_batch_size=50, device="cpu", data_root="/data",
                          download=True, dataset="digits")
    assert all(type(v) is type(getattr(EnvConfig(), k)) for k, v in kwargs.items()
               if getattr(EnvConfig(), k) is not None)
    assert EnvConfig(**kwargs).batch_size == 32


def test_flags_not_given_are_none_and_left_out():
    args = parser().parse_args([])
    assert all(getattr(args, f.name) is None for f in fields(EnvConfig) if hasattr(args, f.name))
    assert env_kwargs_from_args(args) == {}
    # A front end's own flags are ignored; a preset fills in what was not given.
    args = add_env_arguments(argparse.ArgumentParser(), include=["batch_size", "dim"])
    args.add_argument("--preset", default="tiny")
    given = env_kwargs_from_args(args.parse_args(["--dim", "48"]))
    assert given == {"dim": 48}
    assert {**dict(dim=32, batch_size=16), **given} == dict(dim=48, batch_size=16)


def test_include_picks_flags_and_rejects_others():
    text = parser(include=["lr", "amp"]).format_help()
    assert "--lr" in text and "--amp" in text and "--batch-size" not in text
    for bad in (["selection"], ["reward_fn"], ["batchsize"]):
        with pytest.raises(ValueError, match="no command-line flag"):
            parser(include=bad)


@pytest.mark.parametrize("argv,words", [
    (["--batch-size", "0"], "batch_size must be a positive integer"),
    (["--batch-size", "many"], "expected an integer"),
    (["--lr", "abc"], "expected a number"),
    (["--lr", "-1"], "lr must be a positive number"),
    (["--alpha", "2"], "alpha must be in"),
    (["--amp", "fp16"], "bf16"),
    (["--dataset", "imagenet"], "cifar10"),
    (["--device", "tpu"], "device must be"),
    (["--episode-steps", "0"], "episode_steps must be a positive integer"),
])
def test_bad_values_are_argparse_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and argv[0] in err.splitlines()[-1]
