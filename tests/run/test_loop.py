"""The one runner (patchenv/run/): budgets, records computed another way, checkpoint
commits, exact resume with a random agent, one setup per run, and the evaluation split
recorded once in meta."""
import json
import pathlib

import gymnasium as gym
import numpy as np
import pytest
import torch

from tiny_env import TINY
from patchenv.run import resume_points
from patchenv.run import records as run_records
from patchenv.run.interrupt import GracefulInterrupt
from patchenv.agentvit_exploration import exploration_mask
from patchenv.registry import make_from_spec
from patchenv.run import Budget, run_training


def build(spec="random:k=20", seed=0):
    agent = make_from_spec(spec, seed=seed)
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, **agent.env_kwargs()})
    return env, agent


def test_budget_is_epochs_seconds_or_both():
    for bad in (dict(), dict(epochs=0), dict(epochs=1.5), dict(seconds=-1), dict(epochs=2, seconds=0)):
        with pytest.raises(ValueError):
            Budget(**bad)
    Budget(epochs=1, seconds=1.0)  # whichever comes first
    for bad in (dict(flops=0), dict(epochs=1, flops=1.5), dict(epochs=1, flops=True)):
        with pytest.raises(ValueError, match="flops must be a positive integer"):
            Budget(**bad)
    with pytest.raises(ValueError, match="a FLOPs budget needs epochs or seconds beside it"):
        Budget(flops=10)
    assert Budget(epochs=2, flops=10).spent(0.0, 10) and not Budget(epochs=2, flops=10).spent(1e9, 9)
    assert Budget(epochs=2, flops=10).record() == {"epochs": 2, "seconds": None, "flops": 10}
    assert Budget(epochs=2).record() == {"epochs": 2, "seconds": None}  # as records were before FLOPs budgets


def test_epochs_and_seconds_stop_at_whichever_comes_first(tmp_path):
    env, agent = build("all")
    m = run_training(env, agent, tmp_path / "e", budget=Budget(epochs=1, seconds=1e6), show_progress=False)
    assert m["summary"]["steps"] == env.unwrapped.steps_per_epoch
    env, agent = build("all")
    m = run_training(env, agent, tmp_path / "s", budget=Budget(epochs=50, seconds=0.3), show_progress=False)
    assert m["summary"]["train_time_s"] >= 0.3 and m["summary"]["steps"] < 50 * env.unwrapped.steps_per_epoch


def test_records_match_the_steps_summed_by_hand(tmp_path):
    env, agent = build()
    rewards, kept, tokens = [], [], []

    class Spy(gym.Wrapper):
        def step(self, action):
            result = self.env.step(action)
            rewards.append(result[1])
            kept.append(result[4]["kept"])
            tokens.append(result[4]["tokens"])
            return result

    m = run_training(Spy(env), agent, tmp_path, budget=Budget(epochs=2), seed=1, show_progress=False)
    spe = env.unwrapped.steps_per_epoch
    assert len(rewards) == 2 * spe and [r["global_step"] for r in m["epochs"]] == [spe, 2 * spe]
    second = m["epochs"][1]
    assert second["mean_reward"] == pytest.approx(np.mean(rewards[spe:]))
    assert second["mean_patches_kept"] == 20.0
    assert second["train_tokens"] == sum(tokens) == 2 * spe * 16 * 20
    # one episode per epoch by default: its return is the epoch's summed reward
    assert second["episode_return"] == pytest.approx(sum(rewards[spe:]))
    assert m["summary"]["mean_reward"] == pytest.approx(np.mean(rewards))
    assert m["meta"]["status"] == "complete"


def test_time_budget_stops_within_a_step_and_evaluates_there(tmp_path):
    env, agent = build("all")
    m = run_training(env, agent, tmp_path, budget=Budget(seconds=0.5), show_progress=False)
    s = m["summary"]
    assert s["train_time_s"] >= 0.5 and s["steps"] > 0
    assert m["epochs"][-1]["train_time_s"] == s["train_time_s"]


def test_a_stop_on_an_epoch_end_never_overwrites_the_checkpoint(tmp_path, monkeypatch):
    env, agent = build()
    spe = env.unwrapped.steps_per_epoch
    stop = GracefulInterrupt(after_steps=spe)  # lands on the epoch's last step
    m = run_training(env, agent, tmp_path, budget=Budget(epochs=2), stop=stop, show_progress=False)
    assert m["meta"]["status"] == "interrupted"
    assert json.loads((tmp_path / "progress.json").read_text())["checkpoint"] == f"checkpoints/step-{spe:09d}"
    # A second save at the same step (e.g. a stop landing where an epoch-end save was just
    # made) writes a new folder; the old one goes only once progress.json names the new.
    state = resume_points.load_checkpoint(tmp_path, env, agent)
    resume_points.save_checkpoint(tmp_path, env, agent, state, {})
    progress = json.loads((tmp_path / "progress.json").read_text())
    folders = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert folders == [pathlib.Path(progress["checkpoint"]).name]  # one, complete, named by progress.json
    assert progress["checkpoint"] == f"checkpoints/step-{spe:09d}.1"
    for name in ("env.pt", "agent.json", "rng.pt"):
        assert (tmp_path / progress["checkpoint"] / name).exists()


def test_resume_with_a_random_agent_is_exact(tmp_path):
    env, agent = build()
    straight = run_training(env, agent, tmp_path / "a", budget=Budget(epochs=2), seed=3, show_progress=False)
    env, agent = build()
    stop = GracefulInterrupt(after_steps=128 + 37)  # in epoch 2
    cut = run_training(env, agent, tmp_path / "b", budget=Budget(epochs=2), seed=3, stop=stop, show_progress=False)
    assert cut["meta"]["status"] == "interrupted" and cut["partial"]["steps"] == 37 and len(cut["epochs"]) == 1
    env, agent = build(seed=99)  # the saved agent's state wins over a fresh one's
    resumed = run_training(env, agent, tmp_path / "b", budget=Budget(epochs=2), seed=3, resume=True,
                           show_progress=False)
    drop = ("train_time_s", "epoch_time_s", "env_step_time_s", "agent_overhead_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed["epochs"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in straight["epochs"]]


def test_exploration_mask_is_a_uniform_vector_cut_at_its_mean():
    rng, by_hand = np.random.default_rng(4), np.random.default_rng(4)
    counts = []
    for _ in range(200):
        mask = exploration_mask(rng, 64)
        values = by_hand.random(64)
        assert mask.dtype == np.int8 and np.array_equal(mask, (values >= values.mean()).astype(np.int8))
        counts.append(mask.sum())
    assert min(counts) >= 1 and 28 < np.mean(counts) < 36  # ~N/2, varying
    assert len(set(counts)) > 5


def test_random_mask_accuracy_is_the_exploration_draw_evaluated_by_hand(tmp_path):
    """test_accuracy_random_masks: one exploration-style mask per test batch of
    batch_size, drawn from default_rng(the run's seed); recomputed here with the ViT
    called directly on each batch of the test split."""
    env, agent = build()
    m = run_training(env, agent, tmp_path / "a", budget=Budget(epochs=1), seed=7, masked_eval=True,
                     show_progress=False)
    got = m["summary"]["test_accuracy_random_masks"]
    assert isinstance(got, float) and 0.0 <= got <= 1.0
    u = env.unwrapped
    rng = np.random.default_rng(7)
    xs, ys = u.data.test_x, u.data.test_y
    correct = 0
    u.model.eval()
    with torch.no_grad():
        for start in range(0, len(ys), u.batch_size):
            values = rng.random(64)
            keep = torch.from_numpy(values >= values.mean())
            x = (xs[start:start + u.batch_size].float() / 255 - u.setup.mean) / u.setup.std
            correct += int((u.model(x, keep).argmax(-1) == ys[start:start + u.batch_size]).sum())
    assert got == correct / len(ys)
    assert m["summary"]["test_accuracy_masked"] is not None  # the agent's own masks, beside it
    # Without masked_eval (e.g. the `all` reference) there is no such column.
    env, agent = build("all")
    m = run_training(env, agent, tmp_path / "b", budget=Budget(epochs=1), seed=7, show_progress=False)
    assert m["summary"]["test_accuracy_random_masks"] is None


def test_random_mask_accuracy_per_image_env_uses_one_mask_per_batch(tmp_path):
    env, agent = build("random:k=20:selection=image")
    m = run_training(env, agent, tmp_path, budget=Budget(epochs=1), seed=7, masked_eval=True, show_progress=False)
    u = env.unwrapped
    draws = run_records.random_masks(u, 7)
    rng = np.random.default_rng(7)
    for _ in range(3):
        mask = draws(None)
        assert mask.shape == (u.batch_size, 64) and (mask == exploration_mask(rng, 64)).all()
    by_batch_masks = u.evaluate("test", masks=run_records.random_masks(u, 7))["accuracy"]
    assert m["summary"]["test_accuracy_random_masks"] == by_batch_masks


def test_the_agent_is_set_up_once_per_run_and_meta_records_the_split(tmp_path):
    """run_training sets the agent up before the run; train(), called every epoch, does not
    again (the env is the same under the runner's wrapper). A new env is set up anew."""
    env, agent = build("random:k=20")
    calls = []
    original = type(agent).setup

    def counting(self, e):
        calls.append(e.unwrapped)
        original(self, e)

    type(agent).setup = counting
    try:
        m = run_training(env, agent, tmp_path / "r", budget=Budget(epochs=3), show_progress=False)
        assert calls == [env.unwrapped]
        other, _ = build("random:k=20")
        agent.train(other, steps=1)
        assert calls == [env.unwrapped, other.unwrapped]
    finally:
        type(agent).setup = original
    # TINY has no validation split: protocol "val" falls back to the test split, said once
    assert m["meta"]["eval_split"] == "test" and m["epochs"][-1]["test_accuracy"] is not None
    env, agent = build("all")
    env = gym.make("patchenv/PatchSelection-v1", **{**TINY, **agent.env_kwargs(), "val_fraction": 0.25})
    m = run_training(env, agent, tmp_path / "v", budget=Budget(epochs=1), show_progress=False)
    assert m["meta"]["eval_split"] == "val" and m["epochs"][-1]["test_accuracy"] is None
