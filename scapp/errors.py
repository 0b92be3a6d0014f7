"""Exceptions and warnings that carry a message meant for the user.

Every ``ScappError`` says what was wrong and what to do about it, in one line.
The CLI prints it to stderr and exits non-zero; the app shows it in a box.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class ScappError(Exception):
    """Base class for every error caused by user input or a user action."""


class InputError(ScappError):
    """A data file cannot be read or does not fit what was asked of it."""


class UnsupportedFormatError(InputError):
    """The file extension or folder layout is not one scapp reads."""


class LabelError(InputError):
    """The label column is missing or unusable (one class, empty, ...)."""


class InputKindError(InputError):
    """The matrix is not the kind of values required (e.g. log-normalized instead of counts)."""


class GeneOverlapError(InputError):
    """A query shares too few genes with the model to be annotated."""


class ModalityError(InputError):
    """A second modality (e.g. protein counts in obsm) is missing, misaligned or unusable."""


class RunError(ScappError):
    """A run folder is missing, unfinished, corrupt or of a newer format."""


class RunNotFoundError(RunError):
    """No run folder at the given path or id."""


class ConfigError(ScappError):
    """A model or training config has an unknown key or an invalid value."""


class TrainingCancelled(ScappError):
    """The user asked the training job to stop."""


class ScappWarning(UserWarning):
    """Base class for scapp warnings (never silenced by scapp itself)."""


class InputRepresentationWarning(ScappWarning):
    """The input looks unusual (non-integer counts, transposed table, ...)."""
