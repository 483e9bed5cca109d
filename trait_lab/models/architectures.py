"""Where each component lives in each architecture: one registry for every hook path.

A *hook path* is a module's name in ``model.named_modules()``; a ``":input"`` suffix means the
module's input (a forward pre-hook) instead of its output. Components:

* ``residual`` — the residual stream after block ``L`` (the block's output).
* ``block_input`` — the residual stream entering block ``L``.
* ``attn_contribution`` / ``mlp_contribution`` — exactly what the attention / MLP branch adds to
  the residual stream, so ``residual == block_input + attn_contribution + mlp_contribution``.
  For post-norm models (Gemma 2/3, OLMo 2) that is the output of the post-norm, not of o_proj.
* ``k_proj`` / ``v_proj`` — key and value projections (not available where QKV is fused).

``residual``, ``block_input``, ``k_proj`` and ``v_proj`` have the same path in every
``model.layers`` model, so :func:`get_hook_path` knows them without ``model=``.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> get_hook_path(2, "attn_contribution", model=tiny_model("gemma2"))
    'model.layers.2.post_attention_layernorm'
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

# The component names live in the torch-free types module; re-exported here.
from trait_lab.core.types import COMPONENTS

INPUT_SUFFIX = ":input"

# Where the list of blocks lives, tried in order (suffix match, so wrappers such as PEFT's
# ``base_model.model.`` prefix are found too).
_LAYER_LIST_NAMES: tuple[str, ...] = (
    "model.layers",
    "model.language_model.layers",
    "language_model.model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.layers",
)


@dataclass(frozen=True)
class BlockLayout:
    """Component paths inside one block, relative to the block (``model.layers.L``)."""

    attn_contribution: str
    mlp_contribution: str
    k_proj: str | None
    v_proj: str | None
    fused_qkv: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {
            "attn_contribution": self.attn_contribution,
            "mlp_contribution": self.mlp_contribution,
        }


_PRE_NORM = BlockLayout("self_attn.o_proj", "mlp.down_proj", "self_attn.k_proj", "self_attn.v_proj")
_POST_NORM = BlockLayout(
    "post_attention_layernorm", "post_feedforward_layernorm", "self_attn.k_proj", "self_attn.v_proj"
)

# model_type -> layout. Only architectures whose residual algebra is tested live here.
ARCHITECTURES: dict[str, BlockLayout] = {
    "llama": _PRE_NORM,
    "mistral": _PRE_NORM,
    "qwen2": _PRE_NORM,
    "qwen3": _PRE_NORM,
    "gemma": _PRE_NORM,
    "gemma2": _POST_NORM,
    "gemma3": _POST_NORM,
    "gemma3_text": _POST_NORM,
    "olmo2": _POST_NORM,
    "phi3": BlockLayout(
        "resid_attn_dropout", "resid_mlp_dropout", None, None, fused_qkv="self_attn.qkv_proj"
    ),
    "gpt2": BlockLayout("attn.resid_dropout", "mlp.dropout", None, None, fused_qkv="attn.c_attn"),
    "gpt_neox": BlockLayout(
        "post_attention_dropout",
        "post_mlp_dropout",
        None,
        None,
        fused_qkv="attention.query_key_value",
    ),
}


def model_type(model: nn.Module) -> str:
    """The ``model_type`` of a model's (text) config, or ``""`` when it has none."""
    config = getattr(model, "config", None)
    if config is None:
        return ""
    text_config = getattr(config, "text_config", None)
    if text_config is not None and getattr(config, "model_type", "") not in ARCHITECTURES:
        return str(getattr(text_config, "model_type", ""))
    return str(getattr(config, "model_type", ""))


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(path, module_list)`` of the model's transformer blocks.

    KempnerForge's top-level ``layers`` ``nn.ModuleDict`` keyed ``"0"`` ... ``"n-1"`` counts too
    (returned as a ``ModuleList`` of the same blocks, so ``f"{path}.{i}"`` names block ``i``).

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_kempnerforge_model
        >>> find_layers(tiny_model("gpt2"))[0], find_layers(tiny_kempnerforge_model())[0]
        ('transformer.h', 'layers')
    """
    modules = dict(model.named_modules())
    for suffix in _LAYER_LIST_NAMES:
        for name, module in modules.items():
            if (name == suffix or name.endswith("." + suffix)) and isinstance(
                module, nn.ModuleList
            ):
                return name, module
    blocks = modules.get("layers")
    if isinstance(blocks, nn.ModuleDict) and list(blocks) == [str(i) for i in range(len(blocks))]:
        return "layers", nn.ModuleList(blocks.values())
    lists = [n for n, m in modules.items() if isinstance(m, nn.ModuleList)]
    raise ValueError(
        f"cannot find the transformer blocks of {type(model).__name__} "
        f"(model_type {model_type(model)!r}): looked for a ModuleList named one of "
        f"{list(_LAYER_LIST_NAMES)}; ModuleLists in this model: {lists[:10]}. "
        "Pass a module path string (see model.named_modules()) instead of a layer index."
    )


def n_layers(model: nn.Module) -> int:
    """Number of transformer blocks."""
    return len(find_layers(model)[1])


def resolve_layers(model: nn.Module, layers: int | Iterable[int] | None) -> list[int]:
    """Layer indices as non-negative ints; ``None`` means every layer, negatives count back.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> resolve_layers(tiny_model(), [0, -1])
        [0, 2]
    """
    count = n_layers(model)
    if layers is None:
        return list(range(count))
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise ValueError("layers is empty; pass a layer index, a list of them, or None for all")
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layers must be ints, got {layer!r}")
        if not -count <= layer < count:
            raise ValueError(
                f"layer {layer} is out of range: this model has {count} layers (0..{count - 1})"
            )
    return [layer % count for layer in chosen]


def hidden_size(model: nn.Module) -> int:
    """Width of the residual stream, from the (text) config."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the hidden size of {type(model).__name__}: no hidden_size")


def context_limit(model: nn.Module) -> int | None:
    """The model's context length (``config.max_position_embeddings`` of its text config),
    when it declares one.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> context_limit(tiny_model())
        256
    """
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", None)
    config = text() if callable(text) else config
    limit = getattr(config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def input_device(model: nn.Module) -> torch.device:
    """The device a model's input ids must be on: where its input embedding runs.

    Under a ``device_map`` (accelerate), parameters may sit on ``"meta"`` (offloaded to CPU or
    disk) or on several devices, so ``next(model.parameters()).device`` is wrong there; the
    embedding's (else the model's) accelerate hook knows its execution device. Without hooks it
    is the embedding's device, else the first parameter not on ``"meta"``, else the CPU.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> input_device(tiny_model())
        device(type='cpu')
    """
    get = getattr(model, "get_input_embeddings", None)
    try:
        embed = get() if callable(get) else None
    except (AttributeError, NotImplementedError):
        embed = None
    for module in (embed, model):
        device = _execution_device(module)
        if device is not None:
            return device
    params = [] if not isinstance(embed, nn.Module) else list(embed.parameters())
    for param in [*params, *model.parameters()]:
        if param.device.type != "meta":
            return param.device
    return torch.device("cpu")


def _execution_device(module: object) -> torch.device | None:
    """The execution device of accelerate's ``AlignDevicesHook`` on ``module``, if it has one."""
    hook = getattr(module, "_hf_hook", None)
    for part in (hook, *getattr(hook, "hooks", ())):
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device(device)
    return None


def _layout_from_names(names: set[str]) -> BlockLayout | None:
    """The layout a block's module names imply (Gemma-2 post-norm first, then Llama pre-norm)."""
    k_proj = "self_attn.k_proj" if "self_attn.k_proj" in names else None
    v_proj = "self_attn.v_proj" if "self_attn.v_proj" in names else None
    for attn, mlp in (
        ("post_attention_layernorm", "post_feedforward_layernorm"),
        ("self_attn.o_proj", "mlp.down_proj"),
    ):
        if attn in names and mlp in names:
            return BlockLayout(attn, mlp, k_proj, v_proj)
    return None


def _block_layout(model: nn.Module) -> BlockLayout:
    """The registry's layout for the model type; else the one the first block's names imply."""
    mtype = model_type(model)
    layout = ARCHITECTURES.get(mtype)
    if layout is not None:
        return layout
    unknown = (
        f"unknown architecture: model_type {mtype!r} ({type(model).__name__}) is not in the "
        f"registry ({', '.join(sorted(ARCHITECTURES))})"
    )
    try:
        prefix, layers = find_layers(model)
    except ValueError as err:
        raise ValueError(f"{unknown}, and {err}") from err
    where = f"{prefix}.0"
    names = [n for n, _ in layers[0].named_modules() if n] if len(layers) else []
    layout = _layout_from_names(set(names))
    if layout is not None:
        return layout
    raise ValueError(
        f"{unknown}, and {where} has neither "
        "post_attention_layernorm + post_feedforward_layernorm (Gemma-2 style) nor "
        f"self_attn.o_proj + mlp.down_proj (Llama style). Modules in {where}: {names}. "
        "Pass the module path of the branch output you want (e.g. 'model.layers.3.mlp') "
        "instead of a component name, or add the model type to "
        "trait_lab.models.architectures.ARCHITECTURES after checking residual == block_input + "
        "attn_contribution + mlp_contribution on it."
    )


def detect_contribution_paths(model: nn.Module) -> dict[str, str]:
    """Paths, relative to a block, of what attention and MLP add to the residual stream.

    Known model types come from ``ARCHITECTURES``. For an unknown or missing ``model_type`` the
    first block's module names decide: ``post_attention_layernorm`` plus
    ``post_feedforward_layernorm`` is Gemma-2 style, else ``self_attn.o_proj`` plus
    ``mlp.down_proj`` is Llama style; neither raises ``ValueError`` listing the block's modules.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> detect_contribution_paths(tiny_model("llama"))
        {'attn_contribution': 'self_attn.o_proj', 'mlp_contribution': 'mlp.down_proj'}
    """
    return _block_layout(model).as_dict()


#: Components whose path is the same in every ``model.layers`` model (no ``model=`` needed).
_STANDARD_SUFFIX: dict[str, str] = {
    "residual": "",
    "block_input": INPUT_SUFFIX,
    "k_proj": ".self_attn.k_proj",
    "v_proj": ".self_attn.v_proj",
}


def _check_component(component: str) -> None:
    if component not in COMPONENTS:
        close = difflib.get_close_matches(component, COMPONENTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown component {component!r}; allowed: {', '.join(COMPONENTS)}.{hint}"
        )


def get_hook_path(layer: int, component: str = "residual", model: nn.Module | None = None) -> str:
    """Module path for a layer's component; ``":input"`` marks the module's input.

    Without ``model``, ``residual``, ``block_input``, ``k_proj`` and ``v_proj`` assume the
    common ``model.layers.L`` layout (with ``self_attn.k_proj`` / ``self_attn.v_proj``); the
    contribution components depend on the architecture and need ``model``.

    Example:
        >>> get_hook_path(16)
        'model.layers.16'
        >>> get_hook_path(3, "block_input")
        'model.layers.3:input'
        >>> get_hook_path(5, "k_proj")
        'model.layers.5.self_attn.k_proj'
    """
    _check_component(component)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {layer!r} ({type(layer).__name__})")
    if model is None:
        if component not in _STANDARD_SUFFIX:
            raise ValueError(
                f"component {component!r} depends on the architecture (e.g. self_attn.o_proj in "
                "Llama, post_attention_layernorm in Gemma 2): pass model=... "
                "(get_hook_path(layer, component, model=model))"
            )
        if layer < 0:
            raise ValueError(
                f"layer {layer} counts from the end, which needs the model's layer count: pass "
                "model=... or a layer index >= 0"
            )
        return f"model.layers.{layer}{_STANDARD_SUFFIX[component]}"
    prefix, layers = find_layers(model)
    count = len(layers)
    if not -count <= layer < count:
        raise ValueError(
            f"layer {layer} is out of range: this model has {count} layers "
            f"(0..{count - 1}, or negative indices from the end)"
        )
    layer = layer % count
    base = f"{prefix}.{layer}"
    if component == "residual":
        return base
    if component == "block_input":
        return base + INPUT_SUFFIX
    layout = _block_layout(model)
    if component in ("attn_contribution", "mlp_contribution"):
        return f"{base}.{getattr(layout, component)}"
    relative = getattr(layout, component)
    if relative is None and layout.fused_qkv is None:
        raise ValueError(
            f"{component!r}: block {base!r} has no self_attn.{component} module; pass the "
            "module path of the projection instead (see model.named_modules())"
        )
    if relative is None:
        raise ValueError(
            f"{component!r} is not a separate module in {model_type(model)!r}: its query, key "
            f"and value come from one fused projection, '{base}.{layout.fused_qkv}'. Capture "
            "that path and split its output, or choose another component."
        )
    return f"{base}.{relative}"


def split_hook_path(path: str) -> tuple[str, bool]:
    """Split ``"a.b:input"`` into ``("a.b", True)``; plain paths are outputs."""
    if path.endswith(INPUT_SUFFIX):
        return path[: -len(INPUT_SUFFIX)], True
    if ":" in path:
        raise ValueError(
            f"hook path {path!r} has an unknown suffix; only {INPUT_SUFFIX!r} is allowed "
            "(meaning the module's input)"
        )
    return path, False


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` (``":input"`` ignored); a missing one raises ``ValueError``.

    The error lists up to 20 of the model's module names, closest matches first, so a typo
    shows its fix. ``""`` is the model itself.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> type(get_module(tiny_model("llama"), "model.layers.0.mlp")).__name__
        'LlamaMLP'
    """
    name, _ = split_hook_path(path)
    try:
        return model.get_submodule(name)
    except AttributeError:
        pass
    available = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, available, n=20, cutoff=0.6)
    shown = close + [n for n in available if n not in close][: 20 - len(close)]
    raise ValueError(
        f"module {name!r} not found in {type(model).__name__}. Candidates, closest first "
        f"({len(shown)} of {len(available)}): {', '.join(shown) or '(none)'}. "
        "List them all with [n for n, _ in model.named_modules()]."
    )
