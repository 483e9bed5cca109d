"""trait_lab.models.tokens.pad_token_id: one padding-id rule, in its documented precedence."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trait_lab.models import pad_token_id
from trait_lab.testing import tiny_model


def tokenizer(pad: object = None, eos: object = None) -> SimpleNamespace:
    return SimpleNamespace(pad_token_id=pad, eos_token_id=eos)


def model(generation: object = None, config: object = None) -> SimpleNamespace:
    return SimpleNamespace(
        generation_config=SimpleNamespace(pad_token_id=generation),
        config=SimpleNamespace(pad_token_id=config),
    )


class TestPrecedence:
    def test_explicit_wins_over_everything(self) -> None:
        got = pad_token_id(tokenizer=tokenizer(1, 2), model=model(3, 4), explicit=9, eos=[5])
        assert got == 9

    def test_explicit_zero_counts(self) -> None:
        assert pad_token_id(tokenizer=tokenizer(1), explicit=0) == 0

    def test_tokenizer_then_generation_config_then_config(self) -> None:
        assert pad_token_id(tokenizer=tokenizer(1, 2), model=model(3, 4), eos=[5]) == 1
        assert pad_token_id(tokenizer=tokenizer(None, 2), model=model(3, 4), eos=[5]) == 3
        assert pad_token_id(tokenizer=tokenizer(None, 2), model=model(None, 4), eos=[5]) == 4

    def test_then_eos_then_tokenizer_eos_then_zero(self) -> None:
        assert pad_token_id(tokenizer=tokenizer(None, 2), model=model(), eos=[5, 6]) == 5
        assert pad_token_id(model=model(), eos=7) == 7
        assert pad_token_id(tokenizer=tokenizer(None, 2), model=model()) == 2
        assert pad_token_id(tokenizer=tokenizer(), model=model()) == 0
        assert pad_token_id() == 0

    @pytest.mark.parametrize("value", ["<pad>", [1, 2], 1.0])
    def test_non_int_ids_are_skipped(self, value: object) -> None:
        assert pad_token_id(tokenizer=tokenizer(value, value), model=model(value, value)) == 0

    def test_model_without_generation_config(self) -> None:
        bare = SimpleNamespace(config=SimpleNamespace(pad_token_id=4))
        assert pad_token_id(model=bare, eos=[5]) == 4


class TestCallers:
    """The rules the generator and capture_at_position used before, kept by the shared helper."""

    def test_generator_rule(self) -> None:
        m = tiny_model()
        m.config.pad_token_id = m.generation_config.pad_token_id = None
        assert pad_token_id(model=m, explicit=None, eos=[3, 4]) == 3
        m.config.pad_token_id = 6
        assert pad_token_id(model=m, explicit=None, eos=[3, 4]) == 6
        m.generation_config.pad_token_id = 5
        assert pad_token_id(model=m, explicit=None, eos=[3, 4]) == 5

    def test_capture_rule(self) -> None:
        assert pad_token_id(tokenizer=tokenizer(1, 2)) == 1
        assert pad_token_id(tokenizer=tokenizer(None, 2)) == 2
        assert pad_token_id(tokenizer=tokenizer()) == 0
