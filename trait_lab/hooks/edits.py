"""The steering edits, written once: add, ablate, cap (floor) and ceiling.

Every hook (``SteeringHook``, ``AblationHook``, ``ActivationCappingHook``, per-position and
per-sample steering) and the generation loop's per-row, per-position steering call
:func:`apply_edit`, so a mode means the same thing everywhere. With ``x`` the fp32 activations
``[..., hidden]``, ``v`` the vector, ``c`` the value and ``m`` the 0/1 mask of the rows and
positions the edit applies to (all of them by default):

=========  ==============================================  =====================================
mode       edit                                            ``c`` is
=========  ==============================================  =====================================
add        ``x + m·c·v``                                   the coefficient (``v`` used as given)
ablate     ``x − m·c·⟨x,v̂⟩·v̂``                             the strength: 1 removes the direction,
                                                           0 is a no-op, 0.5 halves it
cap        ``x + m·max(0, c − ⟨x,v̂⟩)·v̂``                   the floor of the projection
ceiling    ``x − m·max(0, ⟨x,v̂⟩ − c)·v̂``                   the ceiling of the projection
=========  ==============================================  =====================================

For every mode but ``add``, ``v`` must be a unit vector (hooks pass ``as_vector(...,
direction=True)``). The mask matters: capping at 0 is not a no-op, so rows and positions
outside the mask are excluded by ``m``, never by ``c = 0``.

Example:
    >>> import torch
    >>> x = torch.tensor([[3.0, 4.0]])
    >>> apply_edit("ablate", x, torch.tensor([1.0, 0.0]), 1.0).tolist()
    [[0.0, 4.0]]
    >>> apply_edit("ceiling", x, torch.tensor([1.0, 0.0]), 2.0).tolist()
    [[2.0, 4.0]]
"""

from __future__ import annotations

from typing import Literal

import torch

Mode = Literal["add", "ablate", "cap", "ceiling"]
#: The steering modes, in the order the UI lists them.
MODES: tuple[str, ...] = ("add", "ablate", "cap", "ceiling")


def apply_edit(
    mode: str,
    x: torch.Tensor,
    v: torch.Tensor,
    value: float | torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply one steering edit to fp32 activations ``x`` ``[..., hidden]`` (see the module doc).

    ``value`` and ``mask`` are a number or tensors broadcastable to ``x.shape[:-1]`` (e.g.
    ``[batch, 1]`` per-row coefficients and a ``[seq]`` position mask).

    Example:
        >>> import torch
        >>> apply_edit("add", torch.zeros(1, 2), torch.tensor([1.0, 2.0]), 0.5).tolist()
        [[0.5, 1.0]]
    """
    if mode == "add":
        shift = torch.as_tensor(value, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
    else:
        proj = x @ v
        if mode == "ablate":
            shift = -value * proj
        elif mode == "cap":
            shift = torch.clamp(value - proj, min=0)
        elif mode == "ceiling":
            shift = -torch.clamp(proj - value, min=0)
        else:
            raise ValueError(f"unknown steering mode {mode!r}; choose one of {list(MODES)}")
    if mask is not None:
        shift = shift * mask
    return x + shift.unsqueeze(-1) * v
