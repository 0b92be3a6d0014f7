"""One stable colour per cell-type class, shared by every plot of a run.

A class must look the same in the UMAP, the class-size bars and the per-class
F1 bars, or a viewer cannot follow it from one picture to the next. Colours
are assigned by position in the run's class list (``RunStore.classes()`` order), so
the same list always gives the same colours; "Unassigned" is always grey and
does not use up a palette slot.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

__all__ = ["PALETTE", "UNASSIGNED", "UNASSIGNED_COLOR", "class_colors"]

UNASSIGNED = "Unassigned"
UNASSIGNED_COLOR = "#A0A0A0"

# 24 qualitative colours picked from the D3/tab10, Dark24, Alphabet and G10 sets that ship
# with plotly: greys, near-white and near-black removed, then any colour too close to an
# earlier one dropped, so that neighbours stay distinguishable on a white projector slide.
PALETTE: tuple[str, ...] = (
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#BCBD22",
    "#17BECF", "#DA16FF", "#B68100", "#750D86", "#511CFB", "#00A08B", "#FC0080", "#862A16",
    "#0D2A63", "#3283FE", "#DEA0FD", "#DC587D", "#E48F72", "#66AA00", "#16FF32", "#1CFFCE",
)  # fmt: skip

_GOLDEN = 0.618033988749895


def _extra_color(i: int) -> str:
    """The ``i``-th colour past the palette: golden-ratio hue steps, cycling saturation/brightness."""
    h = (0.11 + i * _GOLDEN) % 1.0
    s = (0.80, 0.55, 0.95)[i % 3]
    v = (0.80, 0.62, 0.95)[(i // 3) % 3]
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """Map each class to a hex colour, by its position in ``classes``.

    Parameters
    ----------
    classes
        The run's classes in their canonical order (``RunStore.classes()``). Duplicates keep
        their first colour; ``"Unassigned"`` gets :data:`UNASSIGNED_COLOR`.

    Returns
    -------
    dict
        ``{class: "#RRGGBB"}`` in the order of ``classes``. The first 24 colours come
        from :data:`PALETTE`; beyond that they are generated deterministically.

    Examples
    --------
    >>> class_colors(["B", "NK", "Unassigned"])
    {'B': '#1F77B4', 'NK': '#FF7F0E', 'Unassigned': '#A0A0A0'}
    """
    out: dict[str, str] = {}
    slot = 0
    for c in classes:
        c = str(c)
        if c in out:
            continue
        if c == UNASSIGNED:
            out[c] = UNASSIGNED_COLOR
            continue
        out[c] = PALETTE[slot] if slot < len(PALETTE) else _extra_color(slot - len(PALETTE))
        slot += 1
    return out
