"""The position DSL: parsing, canonical printing, resolution against Python slicing."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import assume, given, strategies as st

from trait_lab.prompts import (
    FRAMES,
    ParsedPosition,
    Position,
    TurnSpan,
    frame_range,
    parse_position_text,
    resolve_batch,
    row_padding,
)

# ---------------------------------------------------------------------- strategies

small = st.integers(-12, 12)
opt = st.none() | small
steps = st.none() | st.integers(-5, 5).filter(lambda s: s != 0)


@st.composite
def positions(draw: st.DrawFn, frames: tuple[str, ...] = FRAMES) -> Position:
    frame = draw(st.sampled_from(frames))
    turn = None if frame == "system" else draw(st.none() | st.integers(-3, 3))
    if draw(st.booleans()):
        return Position(frame, index=draw(small), turn=turn)
    return Position(frame, start=draw(opt), stop=draw(opt), step=draw(steps), turn=turn)


def python_select(frame: list[int], pos: Position) -> list[int]:
    """What Python indexing gives; [] for an out-of-range index."""
    if pos.is_index:
        return [frame[pos.index]] if -len(frame) <= pos.index < len(frame) else []
    return frame[pos.start : pos.stop : pos.step]


# ---------------------------------------------------------------------- parsing


class TestParse:
    @pytest.mark.parametrize(
        ("text", "canonical"),
        [
            ("prompt[-1]", "prompt[-1]"),
            ("prompt[-3:]", "prompt[-3:]"),
            ("response[:]", "response[:]"),
            ("all[:]", "all[:]"),
            ("response[2:10:2]", "response[2:10:2]"),
            ("turn[1]:prompt[-1]", "turn[1]:prompt[-1]"),
            ("system[:]", "system[:]"),
            ("all[::1]", "all[:]"),
            ("all[::]", "all[:]"),
            ("prompt[-0]", "prompt[0]"),
            ("prompt[007:]", "prompt[7:]"),
            ("  turn[ -1 ] : response[ :-2 ] ", "turn[-1]:response[:-2]"),
            ("prompt[::-1]", "prompt[::-1]"),
        ],
    )
    def test_canonical_form(self, text: str, canonical: str) -> None:
        assert str(Position.parse(text)) == canonical
        assert Position.parse(canonical) == Position.parse(text)

    def test_fields(self) -> None:
        assert Position.parse("prompt[-1]") == Position("prompt", index=-1)
        assert Position.parse("response[2:10:2]") == Position("response", None, 2, 10, 2)
        assert Position.parse("turn[1]:all[:3]") == Position("all", stop=3, turn=1)
        assert Position.parse("prompt[-1]").selector == -1
        assert Position.parse("prompt[1:]").selector == slice(1, None, None)

    def test_position_passes_through(self) -> None:
        pos = Position("all", start=1)
        assert Position.parse(pos) is pos

    @pytest.mark.parametrize(
        ("text", "where"),
        [
            ("prompt[-1", "the end of the string"),
            ("prompt[1:2:3:4]", "':' at character 12"),
            ("prompt[1.5]", "'.' at character 8"),
            ("prompt[]", "']' at character 7"),
            ("prompt[1]x", "'x' at character 9"),
            ("turn:prompt[1]", "':' at character 4"),
            ("turn[a]:prompt[1]", "'a' at character 5"),
            ("[1]", "'[' at character 0"),
            ("prompt(1)", "'(' at character 6"),
        ],
    )
    def test_malformed_names_the_character_and_shows_the_grammar(
        self, text: str, where: str
    ) -> None:
        with pytest.raises(ValueError, match="malformed position") as info:
            Position.parse(text)
        message = str(info.value)
        assert where in message
        assert "[turn[N]:]frame[slice]" in message
        assert "'prompt[-1]'" in message  # an example

    def test_unknown_frame_lists_frames_and_suggests(self) -> None:
        with pytest.raises(ValueError, match="unknown frame 'promt'") as info:
            Position.parse("promt[-1]")
        assert "prompt, response, all, system" in str(info.value)
        assert "Did you mean 'prompt'?" in str(info.value)

    def test_missing_slice_suggests_one(self) -> None:
        with pytest.raises(ValueError, match=re.escape("'response[:]'")):
            Position.parse("response")

    @pytest.mark.parametrize("text", ["prompt[::0]", "all[1:5:0]"])
    def test_zero_step(self, text: str) -> None:
        with pytest.raises(ValueError, match="step cannot be zero"):
            Position.parse(text)

    def test_system_is_not_in_a_turn(self) -> None:
        with pytest.raises(ValueError, match="'system' is not part of a turn"):
            Position.parse("turn[0]:system[:]")

    @pytest.mark.parametrize("text", ["", "   "])
    def test_empty(self, text: str) -> None:
        with pytest.raises(ValueError, match="empty position"):
            Position.parse(text)

    def test_not_a_string(self) -> None:
        with pytest.raises(TypeError, match="'prompt\\[-1\\]'"):
            Position.parse(3)  # type: ignore[arg-type]

    def test_direct_construction_is_validated(self) -> None:
        with pytest.raises(ValueError, match="unknown frame"):
            Position("answer", index=0)
        with pytest.raises(ValueError, match="either an index or start/stop/step"):
            Position("prompt", index=0, start=1)
        with pytest.raises(TypeError, match="must be an int"):
            Position("prompt", index=1.0)  # type: ignore[arg-type]
        assert Position("prompt", start=1, step=1).step is None

    def test_frozen(self) -> None:
        with pytest.raises(AttributeError):
            Position.parse("prompt[-1]").frame = "all"  # type: ignore[misc]

    @given(positions())
    def test_str_round_trips(self, pos: Position) -> None:
        text = str(pos)
        assert Position.parse(text) == pos
        assert str(Position.parse(text)) == text

    @given(positions(), st.data())
    def test_whitespace_between_tokens_is_ignored(self, pos: Position, data: st.DataObject) -> None:
        text = str(pos)
        cuts = re.split(r"(\W)", text)  # keep punctuation, split words from it
        spaced = "".join(p + data.draw(st.sampled_from(["", " ", "  "])) for p in cuts if p)
        assume(not re.search(r"-\s", spaced))  # "- 1" is not an integer
        assert Position.parse(spaced) == pos


# ---------------------------------------------------------------------- resolution


class TestResolve:
    def test_frames_in_a_padded_sample(self) -> None:
        def get(text: str) -> list[int]:
            return Position.parse(text).resolve(pad=2, prompt_len=4, response_len=3).tolist()

        assert get("prompt[:]") == [2, 3, 4, 5]
        assert get("response[:]") == [6, 7, 8]
        assert get("all[:]") == [2, 3, 4, 5, 6, 7, 8]
        assert get("prompt[-1]") == [5]
        assert get("prompt[-3:]") == [3, 4, 5]
        assert get("response[::2]") == [6, 8]
        assert get("all[::-3]") == [8, 5, 2]

    def test_returns_a_long_tensor(self) -> None:
        out = Position.parse("prompt[-1]").resolve(0, 3)
        assert out.dtype == torch.long and out.shape == (1,)

    def test_system_and_turns(self) -> None:
        turns = [TurnSpan(3, 6, 9), TurnSpan(9, 12, 14)]
        kw = dict(pad=1, prompt_len=12, response_len=2, system=(0, 3), turns=turns)
        assert Position.parse("system[:]").resolve(**kw).tolist() == [1, 2, 3]
        assert Position.parse("turn[0]:prompt[-1]").resolve(**kw).tolist() == [6]
        assert Position.parse("turn[0]:response[:]").resolve(**kw).tolist() == [7, 8, 9]
        assert Position.parse("turn[1]:all[:]").resolve(**kw).tolist() == list(range(10, 15))
        assert Position.parse("turn[-1]:response[:]").resolve(**kw).tolist() == [13, 14]

    def test_without_spans_the_sample_is_one_turn(self) -> None:
        pos = Position.parse("turn[0]:prompt[-1]")
        assert (
            pos.resolve(0, 5, 2).tolist() == Position.parse("prompt[-1]").resolve(0, 5, 2).tolist()
        )
        with pytest.raises(ValueError, match=re.escape("turn[1] is out of range")) as info:
            Position.parse("turn[1]:prompt[-1]").resolve(0, 5, 2, sample=4)
        assert "sample 4 has 1 turn " in str(info.value)

    def test_turn_out_of_range_with_spans(self) -> None:
        turns = [TurnSpan(0, 2, 3), TurnSpan(3, 5, 5)]
        with pytest.raises(ValueError, match=re.escape("turn[0]..turn[1]")):
            Position.parse("turn[-3]:prompt[:]").resolve(0, 5, turns=turns, sample=0)

    def test_system_missing(self) -> None:
        with pytest.raises(ValueError, match="sample 2 has none: pass system="):
            Position.parse("system[:]").resolve(0, 5, sample=2)

    def test_selects_nothing_names_sample_and_frame_length(self) -> None:
        with pytest.raises(ValueError) as info:
            Position.parse("response[5:]").resolve(0, 4, 2, sample=3)
        assert (
            "position 'response[5:]' selects no token in sample 3 (its response has 2 tokens)"
            in str(info.value)
        )

    def test_index_out_of_range(self) -> None:
        with pytest.raises(ValueError, match="index -9 is out of range") as info:
            Position.parse("prompt[-9]").resolve(1, 5, sample=0)
        assert "its prompt has 5 tokens" in str(info.value)

    def test_missing_response_hint(self) -> None:
        with pytest.raises(ValueError, match="no response: pass responses="):
            Position.parse("response[:]").resolve(0, 5, 0, sample=0)

    def test_bad_lengths(self) -> None:
        with pytest.raises(ValueError, match="pad must be a non-negative int"):
            Position.parse("prompt[:]").resolve(-1, 3)
        with pytest.raises(ValueError, match="does not fit"):
            Position.parse("system[:]").resolve(0, 3, system=(0, 5))

    @given(
        positions(("prompt", "response", "all")),
        st.integers(0, 6),
        st.integers(0, 12),
        st.integers(0, 12),
    )
    def test_matches_python_slicing(self, pos: Position, pad: int, p: int, r: int) -> None:
        pos = Position(pos.frame, pos.index, pos.start, pos.stop, pos.step)  # no turn
        frame = {
            "prompt": list(range(pad, pad + p)),
            "response": list(range(pad + p, pad + p + r)),
            "all": list(range(pad, pad + p + r)),
        }[pos.frame]
        expected = python_select(frame, pos)
        if expected:
            assert pos.resolve(pad, p, r).tolist() == expected
            assert pos.resolve(pad, p, r).tolist() == expected
        else:
            with pytest.raises(ValueError, match="selects no token in sample 7"):
                pos.resolve(pad, p, r, sample=7)

    @given(
        positions(("prompt", "response", "all")),
        st.integers(0, 4),
        st.lists(st.integers(0, 5), min_size=1, max_size=4),
        st.integers(0, 4),
    )
    def test_turns_match_python_slicing(
        self, pos: Position, pad: int, sizes: list[int], split: int
    ) -> None:
        turn_spans, offset = [], 0
        for size in sizes:
            cut = min(split, size)
            turn_spans.append(TurnSpan(offset, offset + cut, offset + size))
            offset += size
        p = offset
        turn = pos.turn if pos.turn is not None else 0
        assume(-len(sizes) <= turn < len(sizes))
        pos = Position(pos.frame, pos.index, pos.start, pos.stop, pos.step, turn)
        t = turn_spans[turn]
        lo, hi = {
            "prompt": (t.start, t.prompt_end),
            "response": (t.prompt_end, t.end),
            "all": (t.start, t.end),
        }[pos.frame]
        expected = python_select(list(range(pad + lo, pad + hi)), pos)
        if expected:
            assert pos.resolve(pad, p, 0, turns=turn_spans).tolist() == expected
        else:
            with pytest.raises(ValueError, match="selects no token"):
                pos.resolve(pad, p, 0, turns=turn_spans)


class TestResolveBatch:
    def test_from_attention_mask(self) -> None:
        mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
        out = resolve_batch("prompt[-1]", mask, [3, 2, 4])
        assert [t.tolist() for t in out] == [[4], [1], [4]]
        out = resolve_batch("response[:]", mask, [2, 2, 1])
        assert [t.tolist() for t in out] == [[4], [2, 3, 4], [2, 3, 4]]

    def test_error_names_the_dataset_index(self) -> None:
        mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
        with pytest.raises(ValueError, match="in sample 9 "):
            resolve_batch("response[:]", mask, [2, 2], first_sample=8)

    def test_right_padding_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="not left-padded"):
            resolve_batch("prompt[-1]", torch.tensor([[1, 1, 0]]), [2])

    def test_prompt_longer_than_row(self) -> None:
        with pytest.raises(ValueError, match="only 2 real tokens"):
            resolve_batch("prompt[-1]", torch.tensor([[0, 1, 1]]), [3])

    def test_length_mismatch(self) -> None:
        with pytest.raises(ValueError, match="prompt_lens has 1 entries for a batch of 2"):
            resolve_batch("prompt[-1]", torch.ones(2, 3), [3])

    @given(
        positions(("prompt", "response", "all")),
        st.lists(st.tuples(st.integers(1, 8), st.integers(0, 6)), min_size=1, max_size=5),
        st.integers(0, 3),
    )
    def test_batch_matches_per_row_slicing(
        self, pos: Position, rows: list[tuple[int, int]], extra: int
    ) -> None:
        pos = Position(pos.frame, pos.index, pos.start, pos.stop, pos.step)
        width = max(p + r for p, r in rows) + extra
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        expected = []
        for i, (p, r) in enumerate(rows):
            pad = width - p - r
            mask[i, pad:] = 1
            frame = {
                "prompt": list(range(pad, pad + p)),
                "response": list(range(pad + p, pad + p + r)),
                "all": list(range(pad, width)),
            }[pos.frame]
            expected.append(python_select(frame, pos))
        prompt_lens = [p for p, _ in rows]
        if all(expected):
            got = resolve_batch(pos, mask, prompt_lens)
            assert [t.tolist() for t in got] == expected
        else:
            first_bad = next(i for i, e in enumerate(expected) if not e)
            with pytest.raises(ValueError, match=f"in sample {first_bad} "):
                resolve_batch(pos, mask, prompt_lens)


class TestBuildingBlocks:
    """The parser's fields, a frame's token range and a row's padding, each on its own."""

    def test_parse_position_text_keeps_the_fields_as_written(self) -> None:
        assert parse_position_text("turn[-1]:all[1:5:1]") == ParsedPosition(
            "all", start=1, stop=5, step=1, turn=-1
        )
        assert Position.parse("turn[-1]:all[1:5:1]").step is None  # Position canonicalizes

    def test_parse_position_text_points_at_the_error(self) -> None:
        with pytest.raises(ValueError, match=r"expected ':' or '\]', found 'x' at character 9"):
            parse_position_text("prompt[-1x]")

    def test_frame_range_of_a_turn_and_of_the_system(self) -> None:
        turns = [TurnSpan(2, 4, 6), TurnSpan(6, 8, 9)]
        assert frame_range("response", 1, 3, 8, 1, turns=turns) == range(11, 12)
        assert frame_range("system", None, 1, 5, system=(0, 2)) == range(1, 3)
        with pytest.raises(ValueError, match=r"'system\[:\]' needs a system message, but sample 7"):
            frame_range("system", None, 0, 5, label="system[:]", sample="7")

    def test_row_padding_counts_leading_zeros_and_refuses_right_padding(self) -> None:
        assert row_padding(torch.tensor([0, 0, 0, 1])) == 3
        assert row_padding(torch.tensor([1, 1])) == 0
        with pytest.raises(ValueError, match="row 4 of attention_mask is not left-padded"):
            row_padding(torch.tensor([1, 1, 0]), 4)
