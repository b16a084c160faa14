"""A file whose pickle runs a shell command never runs it: env, population and runner
checkpoints, SB3 policy zips and agent files are read without the free unpickler, and an
older checkpoint is continued only when the user says they trust it."""
import base64
import hashlib
import io
import json
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch

import agents
from agents.keeprate import packaged_policy
from agents.keeprate_file import read_policy
from tiny_env import TINY
from patchenv import cli, data
from patchenv.env import PatchSelectionEnv
from patchenv.population import PopulationEnv

_SYNTHETIC = data.synthetic()
N = 64
CLI = ["train", "--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu",
       "--no-progress", "--protocol", "paper", "--agent", "random:k=16"]


class Payload:
    """Unpickled, it runs ``touch <marker>``: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def make(**kwargs) -> PatchSelectionEnv:
    return PatchSelectionEnv(**{**TINY, "dataset": _SYNTHETIC, **kwargs})


def one_line(message: str) -> str:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


def sealed(state: dict, fmt: str) -> dict:
    """A checkpoint wrapper around `state` with a checksum that matches (an author of a
    crafted file computes it as easily as we do)."""
    payload = io.BytesIO()
    torch.save(state, payload)
    payload = payload.getvalue()
    return {"format": fmt, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}


def read_state(path) -> dict:
    return torch.load(io.BytesIO(torch.load(path, weights_only=True)["payload"]), weights_only=True)


@pytest.fixture
def saved_env(tmp_path):
    env = make()
    env.reset(seed=0)
    env.step(np.ones(N, dtype=np.int8))
    env.save_checkpoint(tmp_path / "env.pt")
    return env, tmp_path / "env.pt"


def test_a_crafted_env_checkpoint_runs_nothing(tmp_path, saved_env):
    marker = tmp_path / "ran"
    state = read_state(saved_env[1])
    crafted = {
        "outer.pt": {"format": "patchenv-checkpoint-v2", "payload": Payload(marker)},
        "payload.pt": sealed({**state, "model": Payload(marker)}, "patchenv-checkpoint-v2"),
        "v1 payload.pt": sealed({**state, "model": Payload(marker)}, "patchenv-checkpoint-v1"),
    }
    for name, obj in crafted.items():
        torch.save(obj, tmp_path / name)
        target = make()
        with pytest.raises(ValueError) as e:
            target.load_checkpoint(tmp_path / name)
        assert name in one_line(str(e.value))
        assert target.model is None and not marker.exists()
    with pytest.raises(ValueError, match="trust_checkpoint=True"):  # the older format says how to continue it
        make().load_checkpoint(tmp_path / "v1 payload.pt")


def test_a_v1_checkpoint_is_refused_unless_trusted_and_then_continues_bit_for_bit(tmp_path, saved_env):
    env, path = saved_env
    state = read_state(path)
    torch.save(sealed({**state, "format": "patchenv-checkpoint-v1"}, "patchenv-checkpoint-v1"), tmp_path / "v1.pt")
    target = make()
    with pytest.raises(ValueError, match=r"v1\.pt is a patchenv-checkpoint-v1 checkpoint.*--trust-checkpoint"):
        target.load_checkpoint(tmp_path / "v1.pt")
    assert target.model is None
    target.load_checkpoint(tmp_path / "v1.pt", trust_checkpoint=True)
    for _ in range(3):
        a = env.step(np.ones(N, dtype=np.int8))
        b = target.step(np.ones(N, dtype=np.int8))
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4] and a[4]["loss"] == b[4]["loss"]


def test_a_crafted_population_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    envs = PopulationEnv(2, **{**TINY, "dataset": _SYNTHETIC})
    envs.reset(seed=0)
    envs.save_checkpoint(tmp_path / "pop.pt")
    saved = torch.load(tmp_path / "pop.pt", weights_only=True)
    run0 = saved["runs"][0]
    state = torch.load(io.BytesIO(run0["payload"]), weights_only=True)
    crafted = {
        "outer.pt": {**saved, "autoreset": Payload(marker)},
        "run.pt": {**saved, "runs": [sealed({**state, "perm": Payload(marker)}, "patchenv-checkpoint-v2"),
                                     saved["runs"][1]]},
    }
    before = [p.detach().clone() for p in envs.runs[0].model.parameters()]
    for name, obj in crafted.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ValueError) as e:
            envs.load_checkpoint(tmp_path / name)
        assert name in one_line(str(e.value)) and not marker.exists()
    assert all(torch.equal(p, q) for p, q in zip(before, envs.runs[0].model.parameters()))
    torch.save({**saved, "format": "patchenv-population-v1"}, tmp_path / "v1.pt")
    with pytest.raises(ValueError, match="patchenv-population-v1 checkpoint.*trust_checkpoint=True"):
        envs.load_checkpoint(tmp_path / "v1.pt")
    envs.close()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli.main([*CLI, "--epochs", "1", "--out", str(out)]) == 0
    return out


def checkpoint_of(run_dir):
    return run_dir / json.loads((run_dir / "progress.json").read_text())["checkpoint"]


@pytest.mark.parametrize("file", ["rng.pt", "env.pt"])
def test_patchenv_train_resume_runs_no_crafted_file(tmp_path, capsys, finished_run, file):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    marker = tmp_path / "ran"
    torch.save({"python": Payload(marker), "numpy": 0, "torch": 0, "format": "x"}, checkpoint_of(run_dir) / file)
    with pytest.raises(SystemExit) as e:
        cli.main([*CLI, "--epochs", "2", "--out", str(run_dir), "--resume"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert file in err and "could run code" in err and not marker.exists()


def test_an_older_rng_file_resumes_only_with_trust_checkpoint(tmp_path, capsys, finished_run):
    """The layout before (numpy's own state tuple, an array inside) needs the free
    unpickler: refused, with the flag that continues it; continued, the run's numbers are
    those of the same run resumed from the new layout."""
    runs = {}
    for name in ("new", "old"):
        shutil.copytree(finished_run, tmp_path / name)
    folder = checkpoint_of(tmp_path / "old")
    rngs = torch.load(folder / "rng.pt", weights_only=True)
    np_state = rngs["numpy"]
    old_numpy = ("MT19937", rngs["numpy"]["state"]["key"].numpy().astype(np.uint32), np_state["state"]["pos"],
                 np_state["has_gauss"], np_state["gauss"])
    torch.save({"python": rngs["python"], "numpy": old_numpy, "torch": rngs["torch"]}, folder / "rng.pt")
    with pytest.raises(SystemExit):
        cli.main([*CLI, "--epochs", "2", "--out", str(tmp_path / "old"), "--resume"])
    assert "--trust-checkpoint" in capsys.readouterr().err.strip().splitlines()[-1]
    assert cli.main([*CLI, "--epochs", "2", "--out", str(tmp_path / "old"), "--resume", "--trust-checkpoint"]) == 0
    assert cli.main([*CLI, "--epochs", "2", "--out", str(tmp_path / "new"), "--resume"]) == 0
    for name in ("new", "old"):
        rows = json.loads((tmp_path / name / "metrics.json").read_text())["epochs"]
        runs[name] = [{k: v for k, v in row.items() if not k.endswith("_s")} for row in rows]
    assert runs["old"] == runs["new"]


def with_pickled_entry(src, dst, key, obj):
    """A copy of SB3 zip `src` whose ``data`` member holds `obj` cloudpickled under `key`,
    as SB3 writes what JSON cannot hold."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    entries = json.loads(members["data"])
    entries[key] = {":type:": "<class 'object'>", ":serialized:": base64.b64encode(pickle.dumps(obj)).decode()}
    members["data"] = json.dumps(entries).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_sb3_policy_files_run_no_pickled_entry(tmp_path):
    marker = tmp_path / "ran"
    src = packaged_policy("progress")
    model, levels = read_policy(src)
    obs = np.linspace(-1, 1, model.observation_space.shape[0], dtype=np.float32)
    # An entry SB3 would unpickle and we rebuild: replaced before anything is unpickled.
    with_pickled_entry(src, tmp_path / "spaces.zip", "observation_space", Payload(marker))
    crafted, _ = read_policy(tmp_path / "spaces.zip")
    assert not marker.exists()
    assert crafted.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]
    # An entry no patchenv file holds: refused, named.
    with_pickled_entry(src, tmp_path / "extra.zip", "my_callback", Payload(marker))
    with pytest.raises(ValueError, match=r"extra\.zip.*'my_callback'") as e:
        read_policy(tmp_path / "extra.zip")
    one_line(str(e.value))
    assert not marker.exists()


def test_a_ppo_agent_file_loads_without_unpickling_and_refuses_a_crafted_entry(tmp_path):
    env = make(**agents.make("ppo", seed=0).env_kwargs())
    env.reset(seed=0)
    agent = agents.make("ppo", seed=0, n_steps=4, batch_size=4, n_epochs=1)
    agent.setup(env)
    agent.train(env, steps=4)
    agent.save(tmp_path / "ppo.zip")
    loaded = agents.make("ppo", seed=0).load(tmp_path / "ppo.zip")
    want = {k: v for k, v in agent.model.policy.state_dict().items()}
    got = loaded.model.policy.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert loaded.model.observation_space == agent.model.observation_space
    assert loaded.model.action_space == agent.model.action_space
    marker = tmp_path / "ran"
    with_pickled_entry(tmp_path / "ppo.zip", tmp_path / "crafted.zip", "policy_kwargs", Payload(marker))
    agents.make("ppo", seed=0).load(tmp_path / "crafted.zip")  # rebuilt from the agent's config instead
    with_pickled_entry(tmp_path / "ppo.zip", tmp_path / "extra.zip", "env", Payload(marker))
    with pytest.raises(ValueError, match=r"extra\.zip.*'env'"):
        agents.make("ppo", seed=0).load(tmp_path / "extra.zip")
    assert not marker.exists()
    env.close()


def test_an_agentvit_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"format": "x", "agent": "agentvit", "config": {}, "state": Payload(marker)}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"a\.pt"):
        agents.make("agentvit", seed=0).load(tmp_path / "a.pt")
    assert not marker.exists()


def test_a_crafted_cifar10_batch_runs_nothing(tmp_path):
    """CIFAR-10's own format is a pickle: the reader builds arrays, lists and strings only."""
    from datasets_on_disk import write_cifar10

    from patchenv.data.images import DatasetCorruptError

    write_cifar10(tmp_path, n_per_file=8)
    assert data.load_dataset("cifar10", data_root=tmp_path).train_x.shape[0] == 40  # the real format reads
    marker = tmp_path / "ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DatasetCorruptError, match=r"data_batch_3.*os\.system|data_batch_3.*posix\.system") as e:
        data.load_dataset("cifar10", data_root=tmp_path)
    one_line(str(e.value))
    assert not marker.exists()


def test_a_population_that_refuses_one_runs_state_keeps_every_run_as_it_was(tmp_path):
    """Each run's state is checked before any changes, but a run can still refuse one (a
    tensor of another shape under a checksum that matches): the runs restored before it
    go back to what they were."""
    envs = PopulationEnv(2, **{**TINY, "dataset": _SYNTHETIC})
    envs.reset(seed=0)
    envs.save_checkpoint(tmp_path / "pop.pt")
    envs.step(np.ones((2, N), dtype=np.int8))  # the runs move on from what the file holds
    before = [run.sealed_checkpoint()["sha256"] for run in envs.runs]
    saved = torch.load(tmp_path / "pop.pt", weights_only=True)
    state = torch.load(io.BytesIO(saved["runs"][1]["payload"]), weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)
    torch.save({**saved, "runs": [saved["runs"][0], sealed(state, "patchenv-checkpoint-v2")]}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt \(run 1\)") as e:
        envs.load_checkpoint(tmp_path / "bad.pt")
    one_line(str(e.value))
    assert [run.sealed_checkpoint()["sha256"] for run in envs.runs] == before
    envs.close()


def test_an_agent_file_without_its_checksum_loads_only_when_trusted(tmp_path):
    agent = agents.make("random", seed=4, k=8)
    agent.save(tmp_path / "agent.json")
    saved = json.loads((tmp_path / "agent.json").read_text())
    older = {k: v for k, v in saved.items() if k != "sha256"}  # as an older patchenv wrote it
    (tmp_path / "old.json").write_text(json.dumps(older))
    with pytest.raises(ValueError, match=r"old\.json has no checksum.*trust_checkpoint=True"):
        agents.load(tmp_path / "old.json")
    loaded = agents.load(tmp_path / "old.json", trust_checkpoint=True)
    assert loaded.state_dict() == agents.load(tmp_path / "agent.json").state_dict()
