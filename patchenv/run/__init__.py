"""The one experiment runner: ``run_training(env, agent, out, budget=Budget(epochs=3))``
(`loop`), with what it records (`records`), its view of every step (`recorder`), its
checkpoints (`checkpoints`), the output folder's lock (`folder`), its logs (`log`), Ctrl-C
(`interrupt`), the meta block of every results file (`meta`), and what it needs of an env
(`protocol`). ``patchenv train`` and ``compare_selectors`` are thin front ends over it."""
from patchenv.run.resume_points import FORMAT, has_checkpoint, read_progress
from patchenv.run.errors import ResumeNotExactWarning, RunError
from patchenv.run.folder import clear_out, locked
from patchenv.run.loop import print_line, run_training
from patchenv.run.protocol import RunnableEnv
from patchenv.run.records import EPOCH_FIELDS, PROTOCOLS, SUMMARY_FIELDS, Budget, eval_split

__all__ = ["EPOCH_FIELDS", "FORMAT", "PROTOCOLS", "SUMMARY_FIELDS", "Budget", "ResumeNotExactWarning", "RunError",
           "RunnableEnv", "eval_split", "clear_out", "has_checkpoint", "locked", "print_line", "read_progress", "run_training"]
