"""Models spread over devices: check a ``device_map``, or apply one to a model in memory.

A ``device_map`` puts whole modules (blocks such as ``"model.layers.3"``) on GPUs (ints,
``"cuda:N"``), ``"cpu"`` or ``"disk"`` (accelerate). Under it every trait_lab hook, capture,
projection, steering mode and ``HookedGenerator`` give the single-device results: vectors
follow each activation's device (cached per device), captures and scores come back on the CPU
where the single-device contract says so, and input ids go to the input embedding's execution
device (:func:`trait_lab.models.architectures.input_device`). Offloaded blocks are slower: with a
GPU in the map a ``"cpu"`` block's weights are copied to the GPU at every forward, and a
``"disk"`` block's are read from ``offload_folder`` at every forward (on the CPU only "disk"
entries are offloaded; "cpu" blocks run in place).

Example:
    >>> check_device_map({"model.layers.0": 0, "model.layers.1": "disk"}, "offload", "load_model")
    ({'model.layers.0': 0, 'model.layers.1': 'disk'}, 'offload')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import accelerate
import torch
from torch import nn

from trait_lab.models.architectures import get_module

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["STRATEGIES", "DeviceMap", "Placement", "check_covers", "check_device_map", "dispatch"]

#: The strategies ``from_pretrained`` understands as a ``device_map`` string.
STRATEGIES: tuple[str, ...] = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE = re.compile(r"^(cpu|disk|mps|(cuda|xpu|npu)(:\d+)?)$")
DeviceMap = str | dict[str, int | str | torch.device]
#: A checked ``(device_map, offload_folder)``, or ``None`` for no map.
Placement = tuple[DeviceMap, str | None] | None


def check_device_map(
    device_map: object, offload_folder: str | os.PathLike[str] | None, where: str
) -> Placement:
    """``(device_map, offload_folder)`` checked, or ``None`` for no map.

    ``where`` names the caller in the errors. A ``ValueError`` names the bad value and what is
    allowed: a strategy (:data:`STRATEGIES`), one device, or a non-empty dict of module path to
    device (int, "cpu", "disk", "cuda[:N]", "mps", torch.device); "disk" entries need
    ``offload_folder``, and ``offload_folder`` needs a ``device_map``.

    Example:
        >>> check_device_map("auto", None, "load_model")
        ('auto', None)
    """
    if device_map is None:
        if offload_folder is not None:
            raise ValueError(
                f"{where}: offload_folder={os.fspath(offload_folder)!r} without a device_map does "
                "nothing; pass device_map= with 'disk' entries (or 'auto'), or drop offload_folder."
            )
        return None
    devices = "ints (GPU index), 'cpu', 'disk', 'cuda', 'cuda:N', 'mps' or a torch.device"
    if isinstance(device_map, str):
        if device_map not in STRATEGIES and (device_map == "disk" or not _DEVICE.match(device_map)):
            raise ValueError(
                f"{where}: device_map={device_map!r} is not allowed; use a strategy "
                f"({', '.join(map(repr, STRATEGIES))}), one device ('cpu', "
                "'cuda:0', 'mps'), or a dict {module path: device} with devices " + devices + "."
            )
    elif isinstance(device_map, dict) and device_map:
        for key, value in device_map.items():
            ok = isinstance(value, torch.device) or (
                isinstance(value, str) and bool(_DEVICE.match(value))
            )
            ok = ok or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
            if not isinstance(key, str) or not ok:
                raise ValueError(
                    f"{where}: device_map[{key!r}]={value!r} is not allowed: keys are module "
                    f"paths (str) and devices are {devices}. Fix that entry."
                )
        disk = [key for key, value in device_map.items() if value == "disk"]
        if disk and offload_folder is None:
            raise ValueError(
                f"{where}: device_map puts {', '.join(map(repr, disk[:4]))} on 'disk', which "
                "needs a folder for their weights: pass offload_folder='some/empty/folder'."
            )
    else:
        raise ValueError(
            f"{where}: device_map={device_map!r} is not allowed; pass a strategy string such as "
            "'auto', or a non-empty dict {module path: device} with devices " + devices + "."
        )
    folder = None if offload_folder is None else os.fspath(offload_folder)
    return device_map, folder


def check_covers(model: nn.Module, device_map: dict[str, Any], where: str) -> None:
    """Refuse a ``device_map`` whose keys are not modules of ``model`` or leave parameters out.

    ``from_pretrained`` ignores such a map when it names one device only (a typo goes unseen),
    and ``dispatch_model`` fails on a gap with a terse message; this names the fix.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> check_covers(tiny_model(), {"": "cpu"}, "dispatch")
    """
    for key in device_map:
        if key:
            get_module(model, key)  # a typo raises with the closest module names
    left = [
        _top_gap(name, device_map)
        for name, _ in model.named_parameters()
        if not any(key == "" or name == key or name.startswith(key + ".") for key in device_map)
    ]
    if left:
        shown = list(dict.fromkeys(left))
        raise ValueError(
            f"{where}: device_map places no device for {', '.join(map(repr, shown[:4]))}"
            f"{' and more' if len(shown) > 4 else ''}: every parameter needs an entry. Add one "
            f"per module (e.g. {shown[0]!r}: 'cpu'), or use device_map='auto' in load_model."
        )


def _top_gap(name: str, device_map: dict[str, Any]) -> str:
    """The outermost module holding parameter ``name`` that no key of ``device_map`` reaches."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if not any(key == prefix or key.startswith(prefix + ".") for key in device_map):
            return prefix
    return name


def dispatch(
    model: PreTrainedModel,
    device_map: dict[str, int | str | torch.device],
    offload_folder: str | os.PathLike[str] | None = None,
) -> PreTrainedModel:
    """Spread a model already in memory over devices, as ``load_model(device_map=...)`` does.

    ``device_map`` maps module paths (whole blocks, e.g. ``"model.layers.3"``; together they
    must cover the model) to ints / ``"cuda:N"`` (run there), ``"cpu"`` or ``"disk"``.
    ``"disk"`` weights are written to ``offload_folder`` (a new or empty folder) and read back
    at each forward of their module; with a GPU in the map, ``"cpu"`` blocks are likewise copied
    to the GPU at each forward. Uses ``accelerate.dispatch_model``; the model is returned in eval
    mode, its hooks, captures and generation give the same numbers as before. Cost: each
    offloaded block pays a copy (disk: a read) per forward; ``model.to(...)`` is refused after.

    Example:
        >>> import tempfile
        >>> from trait_lab.testing import tiny_model
        >>> model = tiny_model()
        >>> placed = {name: "cpu" for name, _ in model.model.named_children()}
        >>> placed = {f"model.{k}": v for k, v in placed.items() if k != "layers"}
        >>> placed |= {"model.layers.0": "cpu", "model.layers.1": "disk", "model.layers.2": "cpu"}
        >>> model = dispatch(model, {**placed, "lm_head": "cpu"}, tempfile.mkdtemp())
        >>> model.hf_device_map["model.layers.1"]
        'disk'
    """
    if not isinstance(device_map, dict):
        raise ValueError(
            f"dispatch: device_map={device_map!r} must be a dict {{module path: device}}; for a "
            "strategy such as 'auto', load the model with load_model(..., device_map='auto')."
        )
    placement = check_device_map(device_map, offload_folder, "dispatch")
    folder = None if placement is None else placement[1]
    check_covers(model, device_map, "dispatch")
    if folder is not None and (Path(folder) / "index.json").exists():
        raise ValueError(
            f"dispatch: offload_folder={folder!r} already holds offloaded weights (index.json), "
            "which accelerate would load instead of this model's; pass a new or empty folder."
        )
    dispatched = accelerate.dispatch_model(model, device_map, offload_dir=folder)
    dispatched.eval()
    return dispatched
