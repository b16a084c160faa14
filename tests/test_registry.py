"""The agent registry (patchenv/registry.py): specs, seeding, entry-point discovery, loading
by file, and the layering rule that patchenv imports neither agents nor benchmarks."""
import re
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

import agents
import patchenv  # noqa: F401  (registers the env ids)
from agents.base import Agent
from patchenv import registry
from patchenv.selector import PatchSelector

BUILTINS = {"agentvit", "all", "random", "norm_topk", "attention_topk", "ppo", "grow", "cosine", "keeprate", "evolved"}


# -- specs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,expected", [
    ("random", ("random", {})),
    ("random:k=16", ("random", {"k": 16})),
    ("agentvit:frequency=6:eps_decay=450", ("agentvit", {"frequency": 6, "eps_decay": 450})),
    ("ppo:learning_rate=1e-3:net_arch=[32,32]:device=cpu:verbose=0",
     ("ppo", {"learning_rate": 1e-3, "net_arch": [32, 32], "device": "cpu", "verbose": 0})),
    ("random:k=null", ("random", {"k": None})),
    ("x:flag=true:name=abc", ("x", {"flag": True, "name": "abc"})),
])
def test_parse_spec(spec, expected):
    assert registry.parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["x:k=", ":k=1", "random:k", "", "random:=1", "random:k=1:k=2", "a=b", "random:1k=2"])
def test_parse_spec_rejects_malformed_specs_in_one_line(spec):
    with pytest.raises(ValueError, match=re.escape("expected NAME[:key=value...]")) as e:
        registry.parse_spec(spec)
    assert "\n" not in str(e.value)


def test_make_from_spec_passes_the_seed_unless_the_spec_sets_it():
    assert registry.make_from_spec("random", seed=7).seed == 7
    assert registry.make_from_spec("random:seed=5", seed=7).seed == 5
    assert registry.make_from_spec("random").seed == 0  # the constructor's default
    agent = registry.make_from_spec("agentvit:frequency=6:eps_decay=450", seed=3)
    assert (agent.hp.frequency, agent.hp.eps_decay, agent.hp.seed, agent.seed) == (6, 450, 3, 3)
    assert registry.make_from_spec("random:k=16", seed=1, selection="image").selection == "image"  # overrides


def test_make_from_spec_seeds_the_random_masks():
    obs = np.zeros((64, 8), dtype=np.float32)  # a pooled (N, D) observation

    def masks(seed):
        agent = registry.make_from_spec("random:k=16", seed=seed)
        return [agent.act(obs) for _ in range(3)]

    first, again, other = masks(1), masks(1), masks(2)
    assert all(m.sum() == 16 for m in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))


def test_make_from_spec_errors_are_value_errors_naming_the_agent():
    with pytest.raises(ValueError, match="unknown agent 'nope'; available: agentvit, all"):
        registry.make_from_spec("nope:k=1")
    with pytest.raises(ValueError, match="agent 'random'.*unexpected keyword argument 'q'"):
        registry.make_from_spec("random:q=1")
    with pytest.raises(ValueError, match="agent 'random': k must be"):
        registry.make_from_spec("random:k=abc")
    with pytest.raises(ValueError, match="agent 'agentvit': unknown hyperparameter.*bogus"):
        registry.make_from_spec("agentvit:bogus=1", seed=0)
    with pytest.raises(ValueError, match="agent 'ppo': .*n_steps"):
        registry.make_from_spec("ppo:n_steps=-1")


# -- discovery ------------------------------------------------------------------------------------
def test_entry_points_name_every_builtin_and_available_adds_in_process_agents(restore_registry):
    declared = {ep.name: ep for ep in entry_points(group="patchenv.agents")}
    assert set(declared) == BUILTINS
    assert registry.available() == sorted(BUILTINS) == agents.available()
    for name, ep in declared.items():
        cls = ep.load()
        assert cls.name == name and ep.value.startswith("agents.")  # the file names its agent
        assert isinstance(registry.make(name), PatchSelector)

    @registry.register("test_in_process")
    class InProcess(Agent):
        def act(self, obs, explore=False):
            return np.ones(obs.shape[0], dtype=np.int8)

    assert registry.available() == sorted(BUILTINS | {"test_in_process"})
    assert isinstance(agents.make("test_in_process"), InProcess) and InProcess.name == "test_in_process"


def test_register_refuses_a_taken_name_and_bad_names(restore_registry):
    from agents.baselines import RandomPatches

    class Other(Agent):
        pass

    with pytest.raises(ValueError, match="'random' is already registered .*agents.baselines:RandomPatches"):
        registry.register("random")(Other)
    registry._REGISTRY.pop("random", None)  # as before any make("random"): only the entry point knows it
    with pytest.raises(ValueError, match="'random' is already registered .*agents.baselines:RandomPatches"):
        registry.register("random")(Other)
    registry.register("random")(RandomPatches)  # the same class again is fine
    registry.register("test_taken")(Other)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("test_taken")(type("Another", (Agent,), {}))
    with pytest.raises(ValueError, match="calls itself 'random'"):
        registry.register("test_alias")(RandomPatches)
    for bad in ("", "a:b", "a=b", None):
        with pytest.raises(ValueError, match="agent name"):
            registry.register(bad)


def test_front_door_is_the_registry():
    assert (agents.make, agents.register, agents.available, agents.load) == (
        registry.make, registry.register, registry.available, registry.load)


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_available_imports_no_agent_and_make_only_the_one_asked_for():
    code = (
        "import sys\n"
        "from patchenv import registry\n"
        "names = registry.available()\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in ('agents', 'stable_baselines3'))\n"
        "registry.make('random')\n"
        "after = sorted(m for m in sys.modules if m.split('.')[0] in ('agents', 'stable_baselines3'))\n"
        "print(len(names), before, after)\n"
    )
    assert _run(code) == f"{len(BUILTINS)} [] ['agents', 'agents.base', 'agents.baselines']"


# -- load by file ---------------------------------------------------------------------------------
def test_load_reads_the_agent_from_the_file(tmp_path):
    agents.make("norm_topk", k=5, selection="image").save(tmp_path / "a.json")
    agent = registry.load(tmp_path / "a.json")
    assert type(agent).__name__ == "NormTopK" and agent.config() == {"k": 5, "selection": "image", "seed": 0}
    with pytest.raises(FileNotFoundError):
        registry.load(tmp_path / "missing.json")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01junk")
    with pytest.raises(ValueError, match="cannot read agent file"):
        registry.load(tmp_path / "junk.bin")
    (tmp_path / "other.json").write_text('{"agent": "no_such_agent", "config": {}, "state": {}}')
    with pytest.raises(ValueError, match="unknown agent 'no_such_agent'"):
        registry.load(tmp_path / "other.json")


@pytest.mark.parametrize("name,suffix", [("random", ".json"), ("agentvit", ".pt"), ("ppo", ".zip")])
@pytest.mark.parametrize("damage", ["not-the-format", "empty", "folder", "broken-zip"])
def test_a_damaged_agent_file_is_a_one_line_value_error_naming_it(tmp_path, name, suffix, damage):
    """Through the registry (which reads the name from the file) and through the agent's own
    load: a ValueError naming the file, on one line, whatever the damage."""
    path = tmp_path / f"agent{suffix}"
    if damage == "folder":
        path.mkdir()
    else:
        path.write_bytes({"not-the-format": b"not json{", "empty": b"",
                          "broken-zip": b"PK\x03\x04" + b"\x00" * 40}[damage])
    for load in (registry.load, agents.make(name).load):
        with pytest.raises(ValueError) as e:
            load(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), str(e.value)
