"""The Gymnasium environment: `PatchSelectionEnv` (`patch_selection`, the class and its
contract) and its parts, one concern a module: `config` (the settings), `action` (an
action parsed once), `batches` (data order, batches, observations), `training_run` (a
fresh ViT and optimiser), `evaluation`, `checkpoint`, `rewards`, `progress` (the run's
statistics and the progress reward), `render`, `spaces` (`TensorBox`), `presets`
(ViT and batch sizes by name), `device`."""
from patchenv.env.config import EnvConfig
from patchenv.env.device import resolve_device
from patchenv.env.patch_selection import PatchSelectionEnv
from patchenv.env.presets import PRESETS

__all__ = ["EnvConfig", "PRESETS", "PatchSelectionEnv", "resolve_device"]
