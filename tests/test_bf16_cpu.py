"""bf16 on a CPU: which precision ``auto`` picks, bucketed rows and LM-head rows giving the
numbers of unbucketed ones, bf16-mixed within a stated tolerance of float32, and the heap setting
taking effect. Speed itself is measured by bench/speed.py, not here."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from test_speed_levers import fused_log_probs_and_grads, layer_input_shapes, loss_and_grads, padded, padding_free, rows, tiny_qwen3

from trainer.models import buckets, cpu
from trainer.models.attention import use_segmented_attention
from trainer.models.buckets import bucket, bucket_rows


def test_bucket_lengths_round_up_by_at_most_three_percent_or_fifteen_tokens():
    seen = [bucket(n) for n in range(1, 5000)]
    assert all(b >= n for n, b in zip(range(1, 5000), seen))
    assert all(b - n <= max(15, n * 0.032) for n, b in zip(range(1, 5000), seen))
    assert seen == sorted(seen)  # monotone
    assert all(bucket(b) == b for b in seen)  # a bucket length is its own bucket
    assert len({bucket(n) for n in range(1025, 2049)}) == 32  # 32 lengths per doubling
    assert bucket(1) == bucket(16) == 16 and bucket(2049) == 2112


def test_only_bf16_matmuls_on_a_cpu_are_bucketed():
    x = torch.zeros(2, 2)
    assert not buckets.bf16_on_cpu(x)
    assert buckets.bf16_on_cpu(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert buckets.bf16_on_cpu(x)
    with torch.autocast("cpu", dtype=torch.float16):
        assert not buckets.bf16_on_cpu(x)


@pytest.fixture
def always_bucket(monkeypatch):
    """Bucket in float32 too, where the numbers can be compared to 1e-6."""
    monkeypatch.setattr(buckets, "bf16_on_cpu", lambda tensor: True)


def test_a_bucketed_padding_free_row_gives_the_same_loss_and_gradients(always_bucket):
    # TRL's SFT call (41 tokens: bucketed to 48)
    batch = {**padding_free(rows([7, 19, 3, 12])), "use_cache": False}
    model = tiny_qwen3()
    assert use_segmented_attention(model)
    want, want_grads = loss_and_grads(model, batch)
    bucket_rows(model)
    shapes = layer_input_shapes(model)
    got, grads = loss_and_grads(model, batch)
    assert shapes == [(1, 48)]
    assert torch.allclose(got, want, atol=1e-6), (got, want)
    for name, grad in want_grads.items():
        assert torch.allclose(grads[name], grad, atol=1e-6), name
    # generation and padded batches are not rows: they run as they are
    shapes.clear()
    model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False)
    model(**padded(rows([3, 5])))
    assert shapes[0] == (1, 3) and shapes[-1] == (2, 5), shapes


def test_unpadded_pairs_and_the_lm_head_bucket_with_the_same_numbers(always_bucket):
    """DPO's path: padded pairs unpadded into one row (trainer.models.unpad), bucketed there, and
    the fused LM head's scored rows bucketed too."""
    from trl.trainer.utils import add_fused_lm_head

    from trainer.models import lm_head
    from trainer.models.unpad import unpad_padded_batches

    lm_head.install()
    prompts = rows([6, 4, 9], seed=11)
    chosen = [p + t for p, t in zip(prompts, rows([5, 7, 2], seed=12))]
    rejected = [p + t for p, t in zip(prompts, rows([3, 8, 6], seed=13))]
    batch = {k: v for k, v in padded(chosen + rejected).items() if k != "labels"}
    model = tiny_qwen3()
    add_fused_lm_head(model)
    want, want_grads = fused_log_probs_and_grads(model, batch)
    assert unpad_padded_batches(model, pairs=True)
    bucket_rows(model)  # the unpadding forward stays, and buckets itself
    shapes = layer_input_shapes(model)
    got, grads = fused_log_probs_and_grads(model, batch)
    real = sum(map(len, chosen + rejected)) - sum(map(len, prompts))  # the prompts once
    assert shapes == [(1, bucket(real))] and bucket(real) > real, (shapes, real)
    assert torch.allclose(got, want, atol=1e-5)
    for name in want_grads:
        assert torch.allclose(grads[name], want_grads[name], atol=1e-5), name


def test_the_plain_lm_head_buckets_its_rows_with_the_same_outputs(always_bucket, monkeypatch):
    from trainer.models import lm_head

    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(37, 16, generator=g)
    weight = torch.randn(50, 16, generator=g)
    targets = torch.randint(0, 50, (37,), generator=g)
    fields = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    results, widths = [], []
    original = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda h, *a: widths.append(h.shape[0]) or original(h, *a))
    for bucketed in (False, True):
        monkeypatch.setattr(buckets, "bf16_on_cpu", lambda tensor, b=bucketed: b)
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        out = lm_head.plain_log_probs(h, w, None, targets, 1.0, 4096, None, 1.0, fields)
        (out[0].sum() + out[1].sum()).backward()
        results.append((out, h.grad, w.grad))
    assert widths == [37, 48]
    (want, want_h, want_w), (got, got_h, got_w) = results
    for a, b in zip(want, got):
        assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-6)
    assert torch.allclose(got_h, want_h, atol=1e-6) and torch.allclose(got_w, want_w, atol=1e-6)


def test_bf16_mixed_is_within_two_percent_of_float32():
    """The stated tolerance of bfloat16-mixed (autocast over float32 weights, rows bucketed):
    the loss within 2% of float32's and the gradients pointing the same way (cosine > 0.99)."""
    batch = {**padding_free(rows([30, 45, 12, 60], seed=5)), "use_cache": False}  # 147 tokens
    model = tiny_qwen3()
    use_segmented_attention(model)
    bucket_rows(model)
    shapes = layer_input_shapes(model)
    want, want_grads = loss_and_grads(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, grads = loss_and_grads(model, batch)
    assert shapes == [(1, 147), (1, 160)], shapes  # bucketed under bf16 only
    assert all(g.dtype == torch.float32 for g in grads.values())
    assert abs(got - want) / want < 0.02, (got, want)
    flat = lambda gs: torch.cat([g.flatten() for g in gs.values()])  # noqa: E731
    assert torch.nn.functional.cosine_similarity(flat(grads), flat(want_grads), dim=0) > 0.99


def test_auto_precision_is_bf16_mixed_only_on_a_cpu_that_multiplies_bf16_and_a_wide_enough_model(monkeypatch, tmp_path):
    import json

    from trainer.models.loading import autocast_flags, model_width, resolve_precision, torch_dtype

    monkeypatch.setattr(cpu, "has_bf16_matmul", lambda: True)
    assert resolve_precision("auto", "cpu") == "bfloat16-mixed"  # width unknown: a user's model
    assert resolve_precision("auto", "cpu", 256) == "bfloat16-mixed"
    assert resolve_precision("auto", "cpu", 128) == "float32"  # the embedded default: slower in bf16
    assert resolve_precision("bfloat16-mixed", "cpu", 128) == "bfloat16-mixed"  # asked for: kept
    assert resolve_precision("auto", "mps") == "float32"
    assert resolve_precision("float32", "cpu") == "float32"
    monkeypatch.setattr(cpu, "has_bf16_matmul", lambda: False)
    assert resolve_precision("auto", "cpu") == "float32"
    assert torch_dtype("bfloat16-mixed") == torch.float32 and torch_dtype("bfloat16") == torch.bfloat16
    assert autocast_flags("bfloat16-mixed") == autocast_flags("bfloat16") == {"bf16": True, "fp16": False}
    assert autocast_flags("float16") == {"bf16": False, "fp16": True}
    assert autocast_flags("float32") == {"bf16": False, "fp16": False}
    # the width from the folder's config.json, a multimodal one's text config, an adapter's base
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps({"hidden_size": 1024}))
    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "config.json").write_text(json.dumps({"text_config": {"hidden_size": 2048}}))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "base")}))
    assert [model_width(tmp_path / n) for n in ("base", "vlm", "adapter", "missing")] == [1024, 2048, 1024, None]
    assert model_width(None) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keeping_freed_memory_serves_big_blocks_from_the_heap_and_keeps_them():
    """In a fresh process glibc maps an 8 MB block on its own and unmaps it when freed (the next
    step faults it in again); with the thresholds set, the block comes from the heap and stays
    there once freed. Read from glibc's own counters (mallinfo2)."""
    script = textwrap.dedent("""
        import ctypes, sys, torch
        from trainer.models.cpu import keep_freed_memory

        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL("libc.so.6")
        if not hasattr(libc, "mallinfo2"):
            print("no-mallinfo2"); sys.exit()
        libc.mallinfo2.restype = Info
        if sys.argv[1] == "keep":
            assert keep_freed_memory()
        mapped = libc.mallinfo2().hblkhd
        block = torch.ones(2_000_000)  # 8 MB
        mapped_for_it = libc.mallinfo2().hblkhd - mapped
        del block
        print(mapped_for_it >= 8_000_000, libc.mallinfo2().fordblks >= 8_000_000)
    """)
    seen = {}
    for mode in ("default", "keep"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        seen[mode] = done.stdout.split()
    if seen["default"] == ["no-mallinfo2"]:
        pytest.skip("this glibc has no mallinfo2 (before 2.33)")
    assert seen == {"default": ["True", "False"], "keep": ["False", "True"]}, seen


def test_trls_call_under_bf16_autocast_buckets_the_row_and_the_head_unpatched(monkeypatch):
    """TRL's SFT call (``use_cache=False``, the fused LM head) under autocast, as accelerate runs
    it with ``bf16=True``: the real detection buckets both the backbone's row and the head's rows."""
    from trl.trainer.utils import add_fused_lm_head

    from trainer.models import lm_head

    lm_head.install()
    batch = padding_free(rows([30, 45, 12, 60], seed=5))  # 147 tokens, 143 of them scored
    model = tiny_qwen3()
    add_fused_lm_head(model)
    use_segmented_attention(model)
    bucket_rows(model)
    shapes, widths = layer_input_shapes(model), []
    original = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda h, *a: widths.append(h.shape[0]) or original(h, *a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch, use_cache=False, fused_lm_head=True)
    assert shapes == [(1, 160)], shapes
    scored = int((batch["labels"] != -100).sum()) - 4  # TRL shifts: each sequence's first label goes
    assert widths[-1] == bucket(scored) > scored, (widths[-1], scored)
    assert tuple(out.log_probs.shape) == (1, 146)  # back at the real length (TRL's shift: one less)


def test_calls_and_models_bucketing_cannot_serve_run_as_they_are(always_bucket):
    """Outputs asked per layer or router (by the call or the config), per-token inputs besides the
    ids, and mixture-of-experts models (their router loss would count the filler) are not bucketed."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    batch = {k: v for k, v in padding_free(rows([7, 19, 3, 12])).items() if k != "labels"}
    model = tiny_qwen3()
    use_segmented_attention(model)
    bucket_rows(model)
    shapes = layer_input_shapes(model)
    with torch.no_grad():
        model.base_model(**batch, use_cache=False)
        model.base_model(**batch, use_cache=False, output_hidden_states=True)
        model.base_model(**batch, use_cache=False, output_router_logits=True)
        model.base_model(**batch, use_cache=False, token_type_ids=torch.zeros_like(batch["input_ids"]))
        model.config.output_hidden_states = True
        model.base_model(**batch, use_cache=False)
    assert shapes == [(1, 48)] + [(1, 41)] * 4, shapes

    moe = Qwen3MoeForCausalLM(Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        intermediate_size=64, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, attn_implementation="sdpa",
    ))
    bucket_rows(moe)
    assert "forward" not in vars(moe.base_model)
