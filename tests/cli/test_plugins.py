"""Agents of a user's own reach both front ends as plug-ins: ``--plugin file.py`` or
``--plugin module``, and ``$PATCHENV_PLUGINS``; the unknown-agent error says how."""
import json
import subprocess
import sys
import textwrap

import pytest

from benchmarks import compare_selectors
from patchenv import cli, registry

PLUGIN = textwrap.dedent('''
    import numpy as np
    from agents.base import Agent
    from patchenv.registry import register

    @register("{name}")
    class FirstHalf(Agent):
        """Keeps the first half of the patches: a mask anyone can check."""
        def act(self, obs, explore=False):
            mask = np.zeros(self.num_patches, dtype=np.int8)
            mask[: self.num_patches // 2] = 1
            return mask
''')
TINY = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "64", "--device", "cpu", "--no-progress",
        "--protocol", "paper"]


@pytest.fixture
def plugins_env(monkeypatch):
    """No plug-in before the test, and none after it: the variable (which import_plugins
    extends), the registrations and the imported-once record are put back."""
    monkeypatch.setenv(registry.PLUGINS_VAR, "")
    names, imported = set(registry._REGISTRY), set(registry._IMPORTED)
    yield
    for name in set(registry._REGISTRY) - names:
        del registry._REGISTRY[name]
    registry._IMPORTED.intersection_update(imported)


def test_a_plugin_file_names_its_agent_for_patchenv_train(tmp_path, plugins_env):
    (tmp_path / "first_half.py").write_text(PLUGIN.format(name="first_half_file"))
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--plugin", str(tmp_path / "first_half.py"), "--agent", "first_half_file",
                     "--epochs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["mean_patches_kept"] == 32.0  # its mask keeps half of the 64 patches
    assert summary["patch_keep_frequency"] == [1.0] * 32 + [0.0] * 32


def test_a_plugin_module_names_its_agent_for_compare_selectors(tmp_path, monkeypatch, plugins_env):
    (tmp_path / "half_module.py").write_text(PLUGIN.format(name="first_half_module"))
    monkeypatch.chdir(tmp_path)  # a module beside the user, as `python -m` finds it
    assert compare_selectors.main([*TINY, "--plugin", "half_module", "--selectors", "first_half_module",
                                   "--seeds", "0", "--epochs", "1", "--out", str(tmp_path / "sweep")]) == 0
    runs = json.loads((tmp_path / "sweep" / "results.json").read_text())["runs"]
    kept = {r["selector"]: r["mean_patches_kept"] for r in runs}
    assert kept == {"all": 64.0, "first_half_module": 32.0}  # the reference `all` runs beside it


def test_the_environment_variable_reaches_a_new_process(tmp_path, plugins_env):
    (tmp_path / "env_plugin.py").write_text(PLUGIN.format(name="first_half_env"))
    code = "from patchenv import registry; print('first_half_env' in registry.available())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, registry.PLUGINS_VAR: str(tmp_path / "env_plugin.py")})
    assert out.stdout.strip() == "True"


def test_unknown_agents_and_broken_plugins_say_what_to_do(tmp_path, plugins_env, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", *TINY, "--agent", "no_such_agent", "--out", str(tmp_path / "a")])
    assert "--plugin" in capsys.readouterr().err
    (tmp_path / "broken.py").write_text("raise RuntimeError('oops')\n")
    with pytest.raises(SystemExit):
        cli.main(["train", *TINY, "--plugin", str(tmp_path / "broken.py"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert "cannot import the agent plug-in" in err and "RuntimeError: oops" in err and not (tmp_path / "b").exists()
