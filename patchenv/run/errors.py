"""What the runner raises and warns: one-line errors, nothing changed."""
from __future__ import annotations


class RunError(ValueError):
    """A run that cannot start or resume as asked (one-line message; nothing was changed)."""


class ResumeNotExactWarning(UserWarning):
    """A resumed run continues, but its numbers will differ from an uninterrupted run's
    (the agent's ``resume_caveat`` says why)."""
