"""Model registry: every method behind the same interface (``scapp.models.base.ScappModel``)."""

from __future__ import annotations

from scapp.errors import ConfigError

AVAILABLE = ("sims", "hydra", "logreg")
PLANNED = ("zipo", "ssl")


def get_model_class(name: str) -> type:
    """The model class for ``name``; planned methods get a clear 'not yet' message."""
    if name == "sims":
        from scapp.models.sims import SIMSModel

        return SIMSModel
    if name == "hydra":
        from scapp.models.hydra import HydraModel

        return HydraModel
    if name == "logreg":
        from scapp.models.logreg import LogRegModel

        return LogRegModel
    if name in PLANNED:
        msg = f"Model {name!r} is not available in this version of scapp yet; available: {', '.join(AVAILABLE)}."
        raise ConfigError(msg)
    msg = f"Unknown model {name!r}; available: {', '.join(AVAILABLE)}."
    raise ConfigError(msg)
