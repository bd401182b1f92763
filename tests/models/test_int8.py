"""precision="int8": Linear layers as int8 matmuls; float32 output close to fp32; CLI flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from embtune import EmbeddingModel, EmbtuneError
from embtune.cli import main
from embtune.models.int8 import FLOAT_LINEARS, Bf16Linear, Int8Linear, quantize_linears

TEXTS = ["the red cat and the dog", "a small house by the river", "people play music at night",
         "the old teacher reads a book", "fast cars on the city road", "a happy child drinks water"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("onednn,unsigned", [(True, False), (True, True), (False, False)],
                         ids=["onednn-s8", "onednn-u8", "int_mm"])
@pytest.mark.parametrize("rows", [3, 40])  # _int_mm needs > 16 rows: small inputs are padded
def test_int8_linear_is_the_quantized_product_and_close_to_the_float_linear(rows, onednn, unsigned, monkeypatch):
    import embtune.models.int8 as int8

    if onednn and not int8._HAS_QLINEAR:
        pytest.skip("this torch build has no oneDNN int8 linear")
    monkeypatch.setattr(int8, "_HAS_QLINEAR", onednn)
    monkeypatch.setattr(int8, "UNSIGNED_ACTIVATIONS", unsigned)  # uint8 = q + 128, zero point 128 (VNNI CPUs)
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(2, rows, 64)
    q = Int8Linear(linear)
    assert q.zero_point == (128 if unsigned else 0)
    with torch.no_grad():
        out, ref = q(x), linear(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # the math it stands for: symmetric int8 per output channel (weights; 7 bits on oneDNN without int8 dot
    # products, whose 16-bit pair sums would saturate) and per row (inputs), int32 sums
    assert q.weight_levels == (127 if int8.HAS_INT8_DOT or not onednn else 63)
    w_scale = linear.weight.abs().amax(1) / q.weight_levels
    w_q = torch.round(linear.weight / w_scale[:, None])
    x2 = x.reshape(-1, 64)
    x_scale = x2.abs().amax(1, keepdim=True) / 127
    x_q = torch.round(x2 / x_scale)
    assert w_q.abs().max() == q.weight_levels and x_q.abs().max() == 127  # full range: the sums would saturate
    exact = ((x_q.double() @ w_q.double().t()) * x_scale.double() * w_scale.double() + linear.bias.double()).float()
    torch.testing.assert_close(out.reshape(-1, 48), exact.detach(), atol=1e-4, rtol=1e-4)
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 0.02  # quantized (not a float copy), and close


def test_quantize_linears_replaces_every_supported_linear(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    supported = {n for n, m in linears.items() if m.in_features % 8 == 0 and m.out_features % 8 == 0}
    expected = {n for n in supported if n.rsplit(".", 1)[-1] not in FLOAT_LINEARS}
    assert any(n.rsplit(".", 1)[-1] in FLOAT_LINEARS for n in supported)  # attention projections (query or fused qkv) stay float
    assert quantize_linears(model) == len(expected) > 0
    assert {n for n, m in model.named_modules() if isinstance(m, Int8Linear)} == expected
    assert all(isinstance(dict(model.named_modules())[n], nn.Linear) for n in supported - expected)


def test_with_bf16_the_attention_projections_become_bf16_matmuls(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    kept = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in FLOAT_LINEARS}
    linear = dict(model.named_modules())[sorted(kept)[0]]
    x = torch.randn(5, 7, linear.in_features)
    with torch.no_grad():
        # the bf16 product of bf16-rounded inputs and weights, accumulated in float
        ref = (x.bfloat16().float() @ linear.weight.bfloat16().float().t() + linear.bias.bfloat16().float())
    quantize_linears(model, bf16=True)
    assert kept and {n for n, m in model.named_modules() if isinstance(m, Bf16Linear)} == kept
    bf16 = dict(model.named_modules())[sorted(kept)[0]]
    with torch.no_grad():
        out = bf16(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=0.02, rtol=0.01)  # one bf16 rounding of the output


def test_int8_encode_is_float32_and_close_to_fp32(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    ref = model.encode(TEXTS, precision="fp32")
    out = model.encode(TEXTS, precision="int8")
    assert out.dtype == np.float32 and out.shape == ref.shape
    cos = _cos(out, ref)
    assert cos.min() > 0.99 and not np.array_equal(out, ref)
    # the original model is untouched: fp32 again gives the same as before
    np.testing.assert_array_equal(model.encode(TEXTS, precision="fp32"), ref)


def test_int8_copy_follows_weight_changes(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    before = model.encode(TEXTS, precision="int8")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    assert not np.allclose(model.encode(TEXTS, precision="int8"), before)


def test_int8_off_cpu_is_a_clear_error(tiny_bert_dir, monkeypatch):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("meta")))
    with pytest.raises(EmbtuneError, match="int8.*CPU only"):
        model.encode(TEXTS, precision="int8")


def test_cli_encode_precision_int8(tiny_bert_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS), encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert main(["encode", str(tiny_bert_dir), "--input", str(texts), "--output", str(out), "--precision", "int8"]) == 0
    emb = np.load(out)
    ref = EmbeddingModel.from_transformer(tiny_bert_dir).encode(TEXTS, precision="fp32")
    assert emb.dtype == np.float32 and _cos(emb, ref).min() > 0.99


def test_bf16_and_int8_warn_once_on_a_cpu_without_their_instructions(tiny_bert_dir, monkeypatch, caplog):
    import embtune.models.int8 as int8
    import embtune.utils.device as device

    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    monkeypatch.setattr(device, "fast_bf16", lambda _device: False)
    monkeypatch.setattr(int8, "HAS_INT8_DOT", False)
    device.warn_slow_on_this_cpu.cache_clear()
    with caplog.at_level("WARNING", logger="embtune.utils.device"):
        model.encode(TEXTS[:2], precision="bf16")
        model.encode(TEXTS[:2], precision="bf16")
        model.encode(TEXTS[:2], precision="int8")
        model.encode(TEXTS[:2], precision="fp32")
    messages = [r.getMessage() for r in caplog.records if r.name == "embtune.utils.device"]
    assert len(messages) == 2 and "no native bf16" in messages[0] and "no int8 dot-product" in messages[1]
    device.warn_slow_on_this_cpu.cache_clear()


@pytest.mark.parametrize("int8_dot", [True, False])
def test_without_int8_dot_products_the_ffn_outputs_stay_float(tiny_bert_dir, monkeypatch, int8_dot):
    import embtune.models.int8 as int8
    from embtune.models.fast_encoder import EncoderLayer

    monkeypatch.setattr(int8, "HAS_INT8_DOT", int8_dot)
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    layers = [m for m in model.modules() if isinstance(m, EncoderLayer)]
    for layer in layers:  # the tiny FFN (37 wide) is too narrow for int8 matmuls: 40 wide is supported
        layer.ffn_in, layer.ffn_out = nn.Linear(32, 40), nn.Linear(40, 32)
    assert layers
    model.encode(TEXTS[:2], precision="int8")
    copy = model.__dict__["_lowp_cache"].copy
    kinds = {n.rsplit(".", 1)[-1]: type(m) for n, m in copy.named_modules() if n.rsplit(".", 1)[-1] in
             ("ffn_in", "ffn_out", "attn_out")}
    assert kinds["ffn_in"] is Int8Linear and kinds["attn_out"] is Int8Linear
    from embtune.utils.device import fast_bf16

    kept_float = Bf16Linear if fast_bf16("cpu") else nn.Linear  # float: bf16 where the CPU has native bf16
    assert kinds["ffn_out"] is (Int8Linear if int8_dot else kept_float)


@pytest.mark.parametrize("native_attention", [True, False])
def test_fused_int8_layers_are_the_int8_modules_math(native_attention, monkeypatch):
    """int8.layer_forward (C passes between the int8 matmuls) against the same int8 modules run as torch ops."""
    import embtune.models.int8 as int8
    from embtune.models import fused
    from embtune.models.fast_encoder import EncoderLayer, EncoderSpec, _Layout
    from embtune.utils.device import fast_bf16

    if fused.kernels() is None or not int8._HAS_QLINEAR:
        pytest.skip("needs the C kernels and oneDNN's int8 linear")
    if not native_attention:  # attention on the float32 path (CPUs without AVX512-BF16, or long sequences)
        monkeypatch.setattr(fused, "can_attend_sequences", lambda *a: False)
    spec = EncoderSpec(kind="bert", vocab_size=10, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                       max_positions=64, type_vocab_size=2, layer_norm_eps=1e-12, activation="gelu",
                       hidden_dropout=0.1, attention_dropout=0.1, padding_idx=0)
    torch.manual_seed(0)
    layers = [EncoderLayer(spec).eval() for _ in range(2)]
    for layer in layers:
        for norm in (layer.attn_norm, layer.ffn_norm):
            nn.init.uniform_(norm.weight, 0.5, 1.5), nn.init.uniform_(norm.bias, -0.2, 0.2)
        quantize_linears(layer, FLOAT_LINEARS, bf16=fast_bf16("cpu"))
    lengths = [3, 7, 12, 20]
    mask = torch.arange(20)[None, :] < torch.tensor(lengths)[:, None]
    x0 = torch.randn(sum(lengths), 64)

    def run() -> torch.Tensor:
        layout = _Layout(mask)
        layout.segments = layout.sequence_segments()
        x = x0
        for layer in layers:
            x = layer(x, layout, None)
        return x

    calls = []
    real = int8.layer_forward
    monkeypatch.setattr(int8, "layer_forward", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        fast = run()
        assert len(calls) == 2
        monkeypatch.setattr(int8, "fuses_layer", lambda *a: False)
        ref = run()
    assert len(calls) == 2 and fast.shape == ref.shape == x0.shape
    # the same quantized math; rounding order (and a value on a quantization boundary) may differ
    cos = torch.nn.functional.cosine_similarity(fast, ref, dim=1)
    assert float(cos.min()) > 0.9999
    torch.testing.assert_close(fast, ref, rtol=0, atol=0.05)
