"""Hooks as context managers: capture, steer, ablate, cap and project at any hook point.

Every hook accepts a layer index plus component, or a module path, and removes itself when
its ``with`` block exits, also on an exception. ``HookManager`` does the same for plain torch
hooks on modules named by path. ``AttentionCapture`` records attention probabilities (any
attention implementation) and ``GradientCapture`` the gradients of a loss with respect to layer
activations.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model()
    >>> with SteeringHook(model, torch.ones(32), 1, 2.0), MultiLayerCapture(model) as cap:
    ...     _ = model(**tiny_batch(1, 3))
    >>> len(cap.get_all())
    3
"""

from trait_lab.hooks.attention import AttentionCapture
from trait_lab.hooks.base import (
    HookContext,
    PositionTracker,
    active_edits,
    resolve_target,
)
from trait_lab.hooks.capture import CaptureHook, MultiLayerCapture
from trait_lab.hooks.directional import (
    AblationHook,
    ActivationCappingHook,
    MultiLayerAblation,
)
from trait_lab.hooks.edits import MODES, Mode, apply_edit
from trait_lab.hooks.gradients import GradientCapture
from trait_lab.hooks.manager import HookManager, ManagedHook
from trait_lab.hooks.projection import MultiLayerProjection, ProjectionHook
from trait_lab.hooks.sdpa import SdpaTap, sdpa_weights
from trait_lab.hooks.steering import (
    CompositeHook,
    MultiLayerSteering,
    PerPositionSteeringHook,
    PerSampleSteering,
    SteeringHook,
)
from trait_lab.hooks.values import as_vector

__all__ = [
    "MODES",
    "AblationHook",
    "ActivationCappingHook",
    "AttentionCapture",
    "CaptureHook",
    "CompositeHook",
    "GradientCapture",
    "HookContext",
    "HookManager",
    "ManagedHook",
    "Mode",
    "MultiLayerAblation",
    "MultiLayerCapture",
    "MultiLayerProjection",
    "MultiLayerSteering",
    "PerPositionSteeringHook",
    "PerSampleSteering",
    "PositionTracker",
    "ProjectionHook",
    "SdpaTap",
    "SteeringHook",
    "active_edits",
    "apply_edit",
    "as_vector",
    "resolve_target",
    "sdpa_weights",
]
