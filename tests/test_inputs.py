"""Tests the --input syntax, input normalisation, synthesized values and the order inputs are chosen in."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest
import torch
from conftest import USER_MODEL, USER_MODEL_WITH_EXAMPLE, write_file
from torch import nn

import inspectr
from inspectr import InspectrError
from inspectr.core.inputs import INPUT_SYNTAX, InputSpec, normalize, parse_input_spec
from inspectr.core.sources.base import Inputs

# ---------------------------------------------------------------- parse_input_spec: good forms

GOOD = [
    # text, shape, dtype, low, high, name
    ("2,3,224,224", (2, 3, 224, 224), torch.float32, None, None, None),
    ("2x3x4", (2, 3, 4), torch.float32, None, None, None),
    ("2×3", (2, 3), torch.float32, None, None, None),
    ("7", (7,), torch.float32, None, None, None),
    ("2, 3", (2, 3), torch.float32, None, None, None),
    ("0,3", (0, 3), torch.float32, None, None, None),
    ("float64:5", (5,), torch.float64, None, None, None),
    ("double:5,1", (5, 1), torch.float64, None, None, None),
    ("half:1,2", (1, 2), torch.float16, None, None, None),
    ("bf16:3", (3,), torch.bfloat16, None, None, None),
    ("int64:2,16:0..1000", (2, 16), torch.int64, 0.0, 1000.0, None),
    ("INT64:2,16", (2, 16), torch.int64, None, None, None),
    ("long:4x8:5..9", (4, 8), torch.int64, 5.0, 9.0, None),
    ("int32:2", (2,), torch.int32, None, None, None),
    ("uint8:2,3:0..255", (2, 3), torch.uint8, 0.0, 255.0, None),
    ("bool:2,16", (2, 16), torch.bool, None, None, None),
    ("2,3:-1..1", (2, 3), torch.float32, -1.0, 1.0, None),
    ("2,3:0.5..2.5", (2, 3), torch.float32, 0.5, 2.5, None),
    ("x=2,3", (2, 3), torch.float32, None, None, "x"),
    ("tgt=int64:2,12:0..500", (2, 12), torch.int64, 0.0, 500.0, "tgt"),
    ("attention_mask=bool:2,12", (2, 12), torch.bool, None, None, "attention_mask"),
]


@pytest.mark.parametrize(("text", "shape", "dtype", "low", "high", "name"), GOOD, ids=[g[0] for g in GOOD])
def test_parse_good(text: str, shape: tuple, dtype: torch.dtype, low: float | None, high: float | None,
                    name: str | None) -> None:
    spec = parse_input_spec(text)
    assert spec == InputSpec(shape, dtype, low, high, name)


# ---------------------------------------------------------------- parse_input_spec: bad forms

BAD = [
    "",  # no shape
    "   ",
    "abc",  # an unknown dtype, no shape
    "float99:2,3",  # unknown dtype
    "int64:",  # dtype, no shape
    "2,a,3",
    "2.5,3",
    "-1,3",
    "2 3",
    "=2,3",
    "2,3:5..1",  # empty range
    "2,3:1..1",
    "2,3:a..b",
    "2,3:..5",
    "2,3:0..1:7",  # too many parts
    "2,3:0-1",
    "int64:2,16:0..1e3",
]


@pytest.mark.parametrize("text", BAD)
def test_parse_bad_has_syntax_in_hint(text: str) -> None:
    with pytest.raises(InspectrError) as info:
        parse_input_spec(text)
    err = info.value
    assert err.exit_code == 2
    assert INPUT_SYNTAX in err.hint
    assert "[NAME=][DTYPE:]D1,D2,...[:LOW..HIGH]" in str(err)
    assert repr(text) in err.message  # names what the user typed


def test_parse_unknown_dtype_lists_known() -> None:
    with pytest.raises(InspectrError) as info:
        parse_input_spec("float99:2,3")
    assert "float99" in str(info.value) and "int64" in str(info.value)


def test_parse_empty_dimension_is_an_error() -> None:
    with pytest.raises(InspectrError):
        parse_input_spec("2,,3")


@pytest.mark.parametrize("text", ["int64:2,3:0.2..0.7", "uint8:2,3:0..300"])
def test_bad_integer_range_is_a_clean_error(text: str) -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(InspectrError) as info:
        inspectr.inspect(model, input_specs=[text])
    assert info.value.exit_code == 2


# ---------------------------------------------------------------- InputSpec.make


def test_make_int_range_is_half_open_and_dtype_kept() -> None:
    x = parse_input_spec("int64:64,64:0..1000").make()
    assert x.dtype == torch.int64 and x.shape == (64, 64)
    assert int(x.min()) >= 0 and int(x.max()) < 1000
    assert int(x.max()) > 900  # the range is used, not a default


def test_make_int_small_range_hits_both_ends() -> None:
    x = parse_input_spec("int32:1000:5..7").make()
    assert x.dtype == torch.int32
    assert set(x.unique().tolist()) == {5, 6}


def test_make_int_default_range() -> None:
    x = parse_input_spec("int64:1000").make()
    assert int(x.min()) >= 0 and int(x.max()) < 10


def test_make_float_range() -> None:
    x = parse_input_spec("64,64:-1..1").make()
    assert x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert float(x.min()) < -0.9 and float(x.max()) > 0.9


def test_make_float_noise_without_range() -> None:
    x = parse_input_spec("10000").make()
    assert x.dtype == torch.float32
    assert float(x.min()) < 0 < float(x.max())
    assert 0.9 < float(x.std()) < 1.1


@pytest.mark.parametrize(("text", "dtype"), [("float64:3,3", torch.float64), ("f16:3,3:0..1", torch.float16),
                                             ("bf16:4", torch.bfloat16), ("int8:5:-3..3", torch.int8),
                                             ("uint8:5:0..255", torch.uint8), ("bool:50", torch.bool)])
def test_make_dtypes(text: str, dtype: torch.dtype) -> None:
    spec = parse_input_spec(text)
    x = spec.make()
    assert x.dtype == dtype and tuple(x.shape) == spec.shape


def test_make_int8_negative_range() -> None:
    x = parse_input_spec("int8:1000:-3..3").make()
    assert int(x.min()) == -3 and int(x.max()) == 2


def test_make_bool_has_both_values() -> None:
    x = parse_input_spec("bool:1000").make()
    assert set(x.unique().tolist()) == {False, True}


def test_make_generator_is_reproducible() -> None:
    spec = parse_input_spec("int64:8,8:0..100")
    a = spec.make(torch.Generator().manual_seed(5))
    b = spec.make(torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# ---------------------------------------------------------------- normalize


def test_normalize_tensor_is_one_positional() -> None:
    t = torch.zeros(2, 3)
    inp = normalize(t, "here")
    assert len(inp.args) == 1 and inp.args[0] is t and inp.kwargs == {} and inp.source == "here"


@pytest.mark.parametrize("container", [tuple, list])
def test_normalize_sequence_is_positional(container: type) -> None:
    a, b = torch.zeros(2), torch.ones(3)
    inp = normalize(container([a, b]), "s")
    assert inp.args == (a, b) or (inp.args[0] is a and inp.args[1] is b)
    assert isinstance(inp.args, tuple) and inp.kwargs == {}


def test_normalize_dict_is_keywords() -> None:
    a = torch.zeros(2)
    inp = normalize({"x": a, "mask": None}, "s")
    assert inp.args == () and set(inp.kwargs) == {"x", "mask"} and inp.kwargs["x"] is a


def test_normalize_namedtuple_is_one_positional() -> None:
    pair = namedtuple("Pair", "a b")(torch.zeros(1), torch.ones(1))
    inp = normalize(pair, "s")
    assert len(inp.args) == 1 and inp.args[0] is pair


def test_normalize_inputs_passthrough() -> None:
    inp = Inputs((torch.zeros(1),), {}, "x")
    assert normalize(inp, "y") is inp


def test_describe() -> None:
    inp = Inputs((torch.zeros(2, 3), torch.tensor([[1, 9]])), {"m": torch.ones(2, dtype=torch.float64)}, "")
    assert inp.describe() == ("float32[2, 3]", "int64[1, 2] in [1, 9]", "m=float64[2]")


# ---------------------------------------------------------------- where inputs come from, in order


class TwoArgs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * scale


def test_api_inputs_tensor_tuple_dict() -> None:
    m = nn.Linear(4, 2)
    assert inspectr.inspect(m, torch.randn(3, 4)).inputs == ("float32[3, 4]",)
    two = TwoArgs()
    assert inspectr.inspect(two, (torch.randn(3, 4), torch.ones(3, 1))).inputs == ("float32[3, 4]", "float32[3, 1]")
    r = inspectr.inspect(two, {"x": torch.randn(5, 4), "scale": torch.ones(1)})
    assert r.inputs == ("x=float32[5, 4]", "scale=float32[1]") and r.probe.ok


def test_keyword_input_spec_reaches_forward() -> None:
    r = inspectr.inspect(TwoArgs(), input_specs=["3,4", "scale=3,1"])
    assert r.probe.ok, r.probe.error
    assert r.inputs == ("float32[3, 4]", "scale=float32[3, 1]")
    assert r.module("fc").input_shapes


def test_input_flag_beats_example_input(user_model_with_example: Path) -> None:
    r = inspectr.inspect(f"{user_model_with_example}:Net", input_specs=["6,12"])
    assert r.inputs == ("float32[6, 12]",)


def test_model_hook_beats_file_example_input(tmp_path: Path) -> None:
    path = write_file(tmp_path, "both.py", USER_MODEL_WITH_EXAMPLE + "\n\ndef example_input():\n    return torch.randn(2, 12)\n")
    r = inspectr.inspect(f"{path}:Net", batch_size=3)
    assert r.inputs == ("float32[3, 3, 12]",)  # Net.example_input(batch_size=3)


def test_file_example_input_used(tmp_path: Path) -> None:
    path = write_file(tmp_path, "mod.py", USER_MODEL + "\n\ndef example_input(batch_size=4):\n    return (torch.randn(batch_size, 12),)\n")
    r = inspectr.inspect(f"{path}:Net", batch_size=5)
    assert r.inputs == ("float32[5, 12]",)


def test_example_input_attribute_and_dict() -> None:
    class Kw(TwoArgs):
        example_input = {"x": torch.zeros(2, 4), "scale": torch.ones(2, 1)}

    r = inspectr.inspect(Kw())
    assert r.inputs == ("x=float32[2, 4]", "scale=float32[2, 1]") and r.probe.ok


def test_guess_from_linear(user_model: Path) -> None:
    r = inspectr.inspect(f"{user_model}:Net")
    assert r.inputs == ("float32[4, 12]",)


def test_guess_from_embedding_ids_below_num_embeddings() -> None:
    m = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(8 * 16, 2))
    r = inspectr.inspect(m, batch_size=6)
    (desc,) = r.inputs
    assert desc.startswith("int64[6, 16] in [")
    hi = int(desc.rsplit(",", 1)[1].rstrip("]"))
    assert 0 <= hi < 50


def test_guess_from_conv1d_and_rnn() -> None:
    conv = nn.Sequential(nn.Conv1d(5, 4, 3), nn.ReLU())
    assert inspectr.inspect(conv).inputs[0].startswith("float32[4, 5, ")
    rnn = nn.LSTM(7, 3, batch_first=True)
    r = inspectr.inspect(rnn)
    assert r.inputs == ("float32[4, 16, 7]",) and r.probe.ok


def test_nothing_to_guess_is_a_clear_error() -> None:
    class Opaque(nn.Module):
        def forward(self, a, b):
            return a + b

    with pytest.raises(InspectrError) as info:
        inspectr.inspect(Opaque())
    msg = str(info.value)
    assert "Opaque" in msg and "--input" in msg and "example_input" in msg
    assert "a, b" in msg


def test_example_input_that_raises_is_a_clear_error() -> None:
    class Bad(nn.Linear):
        def example_input(self, batch_size=4):
            raise ValueError("boom")

    with pytest.raises(InspectrError) as info:
        inspectr.inspect(Bad(3, 2))
    assert "boom" in str(info.value) and "--input" in str(info.value)


def test_batch_size_and_seed() -> None:
    m = nn.Linear(12, 3)
    r = inspectr.inspect(m, batch_size=7)
    assert r.inputs == ("float32[7, 12]",) and r.probe.batch_size == 7

    def first(seed: int) -> object:
        return inspectr.inspect(m, seed=seed).to_dict()["modules"][0]["stats"]

    assert first(1) == first(1)
    assert first(1) != first(2)
