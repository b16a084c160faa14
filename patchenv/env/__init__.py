"""The Gymnasium environment: `PatchSelectionEnv` (`patch_selection`, the class and its
contract: the Gymnasium shell) around one `TrainingRun` (`training_run`: the ViT, its
optimiser, data order, pending batch and observation, counters, statistics), whose fixed
part is a `RunSetup` (`run_setup`: the data set on the device, the ViT's shape, the
probe). Beside them, one concern a module: `config` (the settings), `action` (an action
parsed once), `outcome` (a step's episode end, reward and info), `evaluation`,
`run_checkpoint` (a run on disk), `rewards`, `progress` (the run's statistics and the
progress reward), `render`, `spaces` (`TensorBox`), `presets` (ViT and batch sizes by
name), `device`."""
from patchenv.env.config import EnvConfig
from patchenv.env.device import resolve_device
from patchenv.env.patch_selection import PatchSelectionEnv
from patchenv.env.presets import PRESETS

__all__ = ["EnvConfig", "PRESETS", "PatchSelectionEnv", "resolve_device"]
