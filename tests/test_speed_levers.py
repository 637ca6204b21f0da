"""The speed levers change how a batch is computed, never what is learned from it:

- padding-free batches with segmented SDPA give the padded batch's loss and gradients;
- a model switched to segmented SDPA generates exactly as on SDPA (padded batches, KV cache);
- the trained-positions LM head gives TRL's fused-head loss, entropy and token accuracy.

Speed itself is measured by bench/speed.py, not here.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from trainer.models.attention import NAME, segment_bounds, segmented_sdpa_mask, use_segmented_attention


def tiny_qwen3(seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, max_position_embeddings=128, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=None, attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config).float()


def rows(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, 96, (n,), generator=g).tolist() for n in lengths]


def padded(batch):
    length = max(map(len, batch))
    ids = torch.zeros(len(batch), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, row in enumerate(batch):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, : len(row)] = torch.tensor(row)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def left_padded(batch):
    """Padding on the left, as generation takes prompts."""
    length = max(map(len, batch))
    ids = torch.zeros(len(batch), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(batch):
        ids[i, length - len(row):] = torch.tensor(row)
        mask[i, length - len(row):] = 1
    return {"input_ids": ids, "attention_mask": mask}


def padding_free(batch):
    """What TRL's collator yields with padding_free=True (no packing)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": r} for r in batch])


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_padding_free_segmented_matches_padded_loss_and_gradients():
    batch = rows([7, 19, 3, 12])
    model = tiny_qwen3()
    loss_padded, grads_padded = loss_and_grads(model, padded(batch))
    assert use_segmented_attention(model)
    assert model.config._attn_implementation == NAME
    loss_free, grads_free = loss_and_grads(model, padding_free(batch))
    assert torch.allclose(loss_free, loss_padded, atol=1e-6), (loss_free, loss_padded)
    for name, grad in grads_padded.items():
        assert torch.allclose(grads_free[name], grad, atol=1e-6), name


def test_plain_sdpa_on_a_padding_free_row_leaks_across_rows_and_segments_do_not():
    """Why the segmented path is needed at all: one row with no boundaries attends across rows.
    (transformers' own SDPA mask keeps them apart only by a block mask over the whole row.)"""
    batch = rows([9, 9])
    model = tiny_qwen3()
    model.eval()
    free = padding_free(batch)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([batch[1]])).logits[0]
        joined_no_bounds = model(input_ids=free["input_ids"]).logits[0, 9:]
        use_segmented_attention(model)
        joined = model(**{k: v for k, v in free.items() if k != "labels"}).logits[0, 9:]
    assert not torch.allclose(joined_no_bounds, alone, atol=1e-4)
    assert torch.allclose(joined, alone, atol=1e-5)


def test_segment_bounds_from_cu_seq_lens_or_position_ids():
    assert segment_bounds({"cu_seq_lens_q": torch.tensor([0, 3, 8], dtype=torch.int32)}) == [0, 3, 8]
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4]])
    assert segment_bounds({"position_ids": position_ids}) == [0, 3, 8]
    assert segment_bounds({"position_ids": torch.arange(5)[None]}) is None  # one sequence: not packed
    assert segment_bounds({"position_ids": torch.zeros(2, 4, dtype=torch.long)}) is None  # a batch of rows
    assert segment_bounds({}) is None
    # a row that starts mid-sequence: its first tokens are a sequence of their own
    assert segment_bounds({"position_ids": torch.tensor([[5, 6, 0, 1, 0]])}) == [0, 2, 4, 5]


def test_mask_is_skipped_only_without_an_attention_mask():
    assert segmented_sdpa_mask(batch_size=1, q_length=4, kv_length=4, attention_mask=None) is None
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    from transformers.masking_utils import sdpa_mask

    got = segmented_sdpa_mask(batch_size=2, q_length=4, kv_length=4, attention_mask=mask, allow_is_causal_skip=False)
    want = sdpa_mask(batch_size=2, q_length=4, kv_length=4, attention_mask=mask, allow_is_causal_skip=False)
    assert torch.equal(got, want)


def test_segmented_model_generates_exactly_as_sdpa():
    prompts = rows([5, 9, 2], seed=3)
    kwargs = dict(**left_padded(prompts), max_new_tokens=8, do_sample=False, pad_token_id=0)
    model = tiny_qwen3()
    model.eval()
    want = model.generate(**kwargs)
    use_segmented_attention(model)
    got = model.generate(**kwargs)
    assert torch.equal(got, want)
    single = model.generate(input_ids=torch.tensor([prompts[1]]), max_new_tokens=6, do_sample=False, pad_token_id=0)
    model.set_attn_implementation("sdpa")
    assert torch.equal(single, model.generate(input_ids=torch.tensor([prompts[1]]), max_new_tokens=6, do_sample=False, pad_token_id=0))


def test_eager_and_flash_are_left_alone():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, intermediate_size=64, attn_implementation="eager")
    model = Qwen3ForCausalLM(config)
    assert not use_segmented_attention(model)
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize(
    "temperature, softcap, scale, vocab",
    [(1.0, None, 1.0, 50), (0.7, None, 1.0, 50), (1.0, 30.0, 0.5, 50), (1.0, None, 1.0, 300)],
)
def test_plain_log_probs_match_trls_kernel_field_for_field(temperature, softcap, scale, vocab):
    from trl.kernels import ChunkedLogProbFunction

    from trainer.models.lm_head import plain_log_probs

    outputs = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    results = []
    for fn in (ChunkedLogProbFunction.apply, plain_log_probs):
        hidden = torch.randn(37, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        weight = torch.randn(vocab, 16, generator=torch.Generator().manual_seed(2), requires_grad=True)
        targets = torch.randint(0, vocab, (37,), generator=torch.Generator().manual_seed(0))
        got = fn(hidden, weight, None, targets, temperature, 64, softcap, scale, outputs)
        (got[0].sum() + 0.3 * got[1].sum()).backward()
        results.append((got, hidden.grad, weight.grad))
    (want, want_dh, want_dw), (mine, dh, dw) = results
    for name, a, b in zip(outputs, mine, want):
        if name == "is_top1":
            assert torch.equal(a, b), name
        else:
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), name
    assert torch.allclose(dh, want_dh, atol=1e-5) and torch.allclose(dw, want_dw, atol=1e-5)


def test_install_sends_small_vocabularies_to_the_plain_path_and_big_ones_to_trl():
    import trl.trainer.utils as trl_utils
    from trl.kernels import ChunkedLogProbFunction

    from trainer.models import lm_head

    assert lm_head.install() and lm_head.install()  # idempotent
    assert trl_utils._use_triton(torch.device("cpu"))  # CPUs score only the labelled positions
    calls = []
    original = ChunkedLogProbFunction.apply
    try:
        ChunkedLogProbFunction.apply = lambda *a: calls.append(a[1].shape[0]) or original(*a)
        for vocab in (64, lm_head.PLAIN_MAX_VOCAB + 1):
            trl_utils._ChunkedLogProbFunction.apply(torch.randn(3, 4), torch.randn(vocab, 4), None,
                                                    torch.tensor([0, 1, 2]), 1.0, 4096, None, 1.0, ("log_probs",))
    finally:
        ChunkedLogProbFunction.apply = original
    assert calls == [lm_head.PLAIN_MAX_VOCAB + 1]


def test_sft_trainer_loss_on_a_padding_free_batch_is_the_models_own_loss(tiny_model_dir, tiny_tokenizer, tmp_path):
    """Through the engine's path (make_trainer installs the plain head): TRL's SFT loss on a
    padding-free batch with masked prompts equals the model's own cross-entropy on it."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from trainer.models import lm_head

    lm_head.install()
    prompts = rows([11, 6, 17, 9], seed=5)
    data = datasets.Dataset.from_list(
        [{"input_ids": r, "labels": [-100] * (len(r) // 2) + r[len(r) // 2:]} for r in prompts]
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    use_segmented_attention(model)
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_length=None, padding_free=True,
                     bf16=False, use_cpu=True, report_to=[], activation_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tiny_tokenizer)
    batch = trainer.data_collator([data[i] for i in range(4)])
    model.train()
    got = trainer.compute_loss(model, dict(batch))
    want = model(**{k: v for k, v in batch.items()}, fused_lm_head=False).loss
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert 0 <= trainer._metrics["train"]["mean_token_accuracy"][-1] <= 1  # random rows: maybe none right
    assert trainer._metrics["train"]["entropy"][-1] > 0


@pytest.mark.parametrize("method", ["sft", "dpo", "kto", "orpo", "simpo"])
def test_the_engine_trains_padding_free_by_default_with_the_padded_loss(tmp_path, builtin_cache, method):
    """Two 3-step engine jobs on the same data, padded and padding-free: the same losses (SFT's
    collator packs; the preference methods' padded batches are unpadded inside the models)."""
    import io
    import json

    from jobkit import job_values

    from trainer.config import create_default_config
    from trainer.config.schema import TrainerConfig
    from trainer.core import TrainerEngine
    from trainer.data.bundled import PREFERENCES

    assert TrainerConfig().data.padding_free is True
    extra = {}
    if method != "sft":
        (tmp_path / "pairs.jsonl").write_text("".join(PREFERENCES.read_text().splitlines(keepends=True)[:60]))
        extra = {"method": {"name": method}, "data.dataset_path": [str(tmp_path / "pairs.jsonl")]}
    losses = {}
    for padding_free in (False, True):
        values = job_values(
            tmp_path, builtin_cache, **{
                "data.padding_free": padding_free, "hyperparams.max_steps": 3, "hyperparams.logging_steps": 1,
                "inference.num_probes": 0, "inference.preview_every_steps": 0,
                "output.run_name": f"free-{padding_free}", "system.status_file": str(tmp_path / f"status-{padding_free}.json"),
                **extra,
            },
        )
        result = TrainerEngine(console=io.StringIO()).run_job(create_default_config(overrides=values))
        logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[padding_free] = [log["loss"] for log in logs if "loss" in log]
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], abs=1e-4)


def test_segments_cover_every_token():
    batch = rows([4, 1, 6])
    free = padding_free(batch)
    bounds = segment_bounds({"cu_seq_lens_q": free["cu_seq_lens_q"]})
    assert bounds == [0, *itertools.accumulate(map(len, batch))]


def _segment_reference(query, key, value, segments):
    """Attention per segment by plain slicing of the whole row (no split), the definition."""
    out = []
    for start, end, prefix_start, prefix_length in segments:
        if end <= start:
            continue
        q = query[:, :, start:end]
        k = torch.cat([key[:, :, prefix_start:prefix_start + prefix_length], key[:, :, start:end]], dim=2)
        v = torch.cat([value[:, :, prefix_start:prefix_start + prefix_length], value[:, :, start:end]], dim=2)
        causal = torch.ones(end - start, k.shape[2], dtype=torch.bool).tril(prefix_length)
        out.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal))
    return torch.cat(out, dim=2).transpose(1, 2)


@pytest.mark.parametrize("segments, tiles", [
    ([(0, 5, 0, 0), (5, 12, 0, 0), (12, 15, 0, 0)], True),  # tiles the row: split
    ([(0, 6, 0, 0), (6, 6, 0, 0), (6, 10, 0, 4), (10, 15, 6, 2)], True),  # tiles, with an empty one and prefixes
    ([(0, 5, 0, 0), (7, 15, 0, 3)], False),  # a gap: sliced
    ([(6, 15, 0, 0), (0, 6, 6, 4)], False),  # out of order, prefix inside a later piece: sliced
])
def test_split_segments_give_the_sliced_attention_and_gradients(segments, tiles):
    from trainer.models.attention import SEGMENTS, _tiling, segmented_sdpa_forward

    assert (_tiling(segments, 15) is not None) == tiles  # the path the case is meant to take
    g = torch.Generator().manual_seed(0)
    leaves = [torch.randn(1, 4, 15, 8, generator=g, requires_grad=True) for _ in range(3)]
    module = type("Attention", (), {"num_key_value_groups": 1})()
    got, _ = segmented_sdpa_forward(module, *leaves, None, scaling=8 ** -0.5, **{SEGMENTS: segments})
    grads = torch.autograd.grad(got.square().sum(), leaves)
    want = _segment_reference(*leaves, segments)
    want_grads = torch.autograd.grad(want.square().sum(), leaves)
    assert torch.allclose(got, want, atol=1e-6)
    for a, b in zip(grads, want_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_two_rows_packed_by_position_ids_alone_keep_their_sequences_apart():
    """Several rows (batch > 1) packed through position_ids only: the segmented forward cannot
    split them, so transformers' own block mask must still reach SDPA."""
    seqs = rows([6, 5, 4, 7], seed=9)
    model = tiny_qwen3()
    model.eval()
    use_segmented_attention(model)
    ids = torch.tensor([seqs[0] + seqs[1], seqs[2] + seqs[3][:7]])
    positions = torch.tensor([list(range(6)) + list(range(5)), list(range(4)) + list(range(7))])
    with torch.no_grad():
        joined = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        alone = model(input_ids=torch.tensor([seqs[1]]), use_cache=False).logits
    assert torch.allclose(joined[0, 6:], alone[0], atol=1e-5)


def test_models_with_more_than_causal_attention_are_not_switched():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, sliding_window=4, attn_implementation="sdpa")
    model = MistralForCausalLM(config)
    assert not use_segmented_attention(model)
    assert model.config._attn_implementation == "sdpa"


def test_plain_head_takes_the_hidden_states_dtype_like_trls_kernel():
    from trainer.models.lm_head import plain_log_probs

    hidden = torch.randn(5, 8)
    weight = torch.randn(40, 8).to(torch.bfloat16)
    targets = torch.tensor([0, 3, 39, 7, 7])
    log_probs = plain_log_probs(hidden, weight, None, targets, 1.0, 64, None, 1.0, ())[0]
    want = torch.log_softmax(hidden @ weight.float().t(), -1).gather(-1, targets[:, None]).squeeze(-1)
    assert log_probs.dtype == torch.float32 and torch.allclose(log_probs, want, atol=1e-5)


def fused_log_probs_and_grads(model, batch):
    """TRL's preference-trainer call: per-token log-probs through the fused head, and the gradients
    of a loss on them (a DPO-like weighting, so every position counts differently)."""
    model.zero_grad(set_to_none=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                use_cache=False, fused_lm_head=True)
    weights = torch.linspace(0.5, 1.5, out.log_probs.shape[0])[:, None]
    (out.log_probs * weights).sum().backward()
    return out.log_probs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def layer_input_shapes(model) -> list[tuple[int, int]]:
    """(rows, tokens) of every batch the first decoder layer sees, filled in as the model runs."""
    shapes = []

    def record(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        shapes.append(tuple(hidden.shape[:2]))

    model.base_model.layers[0].register_forward_pre_hook(record, with_kwargs=True)
    return shapes


@pytest.mark.parametrize("layout", [padded, left_padded])
def test_unpadded_backbone_gives_the_padded_batchs_log_probs_and_gradients(layout):
    """DPO's batch: sequences of uneven length padded to the longest (right, or left as GRPO's
    prompts are). Unpadded inside the backbone, TRL's fused head gets the same numbers."""
    from trl.trainer.utils import add_fused_lm_head

    from trainer.models import lm_head
    from trainer.models.unpad import unpad_padded_batches

    lm_head.install()
    batch = {k: v for k, v in layout(rows([7, 3, 11, 5], seed=4)).items() if k != "labels"}
    assert not bool(batch["attention_mask"].all())
    results = []
    for unpadded in (False, True):
        model = tiny_qwen3()
        add_fused_lm_head(model)
        if unpadded:
            assert unpad_padded_batches(model) and unpad_padded_batches(model)  # idempotent
        shapes = layer_input_shapes(model)
        results.append(fused_log_probs_and_grads(model, batch))
        # the layers saw one row of the real tokens only, or the padded batch
        assert shapes == [(1, int(batch["attention_mask"].sum()))] if unpadded else [tuple(batch["input_ids"].shape)], shapes
    (want, want_grads), (got, grads) = results
    assert torch.allclose(got, want, atol=1e-5)
    for name in want_grads:
        assert torch.allclose(grads[name], want_grads[name], atol=1e-5), name


def test_unpadded_model_generates_as_before_and_a_copy_unpads_its_own_backbone():
    import copy

    from trainer.models.unpad import unpad_padded_batches

    model = tiny_qwen3()
    model.eval()
    batch = left_padded(rows([5, 9, 2], seed=3))
    kwargs = dict(**batch, max_new_tokens=8, do_sample=False, pad_token_id=0)
    want = model.generate(**kwargs)
    assert unpad_padded_batches(model)
    assert torch.equal(model.generate(**kwargs), want)  # cached decoding takes the backbone's own path
    twin = copy.deepcopy(model)
    assert twin.base_model.forward.__self__ is twin.base_model
    with torch.no_grad():  # the copy's weights, not the original's, answer a padded training call
        for p in twin.parameters():
            p.add_(0.1)
        a = model(**batch, use_cache=False).logits
        b = twin(**batch, use_cache=False).logits
    assert not torch.allclose(a, b)


def test_unpadding_needs_the_segmented_attention():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from trainer.models.unpad import unpad_padded_batches

    config = Qwen3Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, intermediate_size=64, attn_implementation="eager")
    model = Qwen3ForCausalLM(config)
    assert not unpad_padded_batches(model)
    assert "forward" not in vars(model.base_model)


def test_dpo_pairs_compute_their_shared_prompt_once_with_the_same_numbers():
    """DPO's batch: chosen rows, then the rejected rows of the same prompts. Unpadded with pairs,
    each rejected row is packed only from where it leaves its chosen row; the log-probs and
    gradients are the padded batch's. Edge cases: a rejected answer that is a prefix of its chosen
    one, an identical pair, a pair that shares nothing."""
    from trl.trainer.utils import add_fused_lm_head

    from trainer.models import lm_head
    from trainer.models.unpad import unpad_padded_batches

    lm_head.install()
    prompts = rows([6, 4, 9, 5, 3], seed=11)
    chosen_tails, rejected_tails = rows([5, 7, 2, 4, 6], seed=12), rows([3, 8, 6, 4, 2], seed=13)
    chosen = [p + c for p, c in zip(prompts, chosen_tails)]
    rejected = [p + r for p, r in zip(prompts, rejected_tails)]
    rejected[1] = chosen[1][:7]  # a prefix of its chosen row
    rejected[2] = list(chosen[2])  # the same sequence
    rejected[3] = [chosen[3][0] % 90 + 3, *rejected[3][1:]]  # shares nothing
    batch = {k: v for k, v in padded(chosen + rejected).items() if k != "labels"}
    results, seen = [], []
    for unpadded in (False, True):
        model = tiny_qwen3()
        add_fused_lm_head(model)
        if unpadded:
            assert unpad_padded_batches(model, pairs=True)
        seen.append(layer_input_shapes(model))
        results.append(fused_log_probs_and_grads(model, batch))
    (want, want_grads), (got, grads) = results
    assert torch.allclose(got, want, atol=1e-5)
    for name in want_grads:
        assert torch.allclose(grads[name], want_grads[name], atol=1e-5), name
    shared = [6, 7, 11, 0, 3]  # tokens each rejected row shares with its chosen row
    assert seen[1] == [(1, sum(map(len, chosen + rejected)) - sum(shared))], seen


def test_calls_unpadding_cannot_serve_stay_padded_and_moe_models_are_not_switched():
    """Outputs asked per layer (by the call or the config), per-token inputs besides the ids, and
    mixture-of-experts routers (their load-balancing loss reads the padded layout) keep the
    backbone's own padded forward."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    from trainer.models.unpad import unpad_padded_batches

    batch = {k: v for k, v in padded(rows([5, 2, 7], seed=5)).items() if k != "labels"}
    model = tiny_qwen3()
    assert unpad_padded_batches(model)
    shapes = layer_input_shapes(model)
    with torch.no_grad():
        model.base_model(**batch, use_cache=False)
        model.base_model(**batch, use_cache=False, output_hidden_states=True)
        model.base_model(**batch, use_cache=False, token_type_ids=torch.zeros_like(batch["input_ids"]))
        model.config.output_hidden_states = True
        model.base_model(**batch, use_cache=False)
    padded_shape = tuple(batch["input_ids"].shape)
    assert shapes == [(1, int(batch["attention_mask"].sum())), padded_shape, padded_shape, padded_shape], shapes

    moe = Qwen3MoeForCausalLM(Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        intermediate_size=64, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, attn_implementation="sdpa",
    ))
    assert not unpad_padded_batches(moe, pairs=True)
    assert "forward" not in vars(moe.base_model) and moe.config._attn_implementation == "sdpa"


def test_fast_rms_norm_gives_the_modules_loss_and_gradients():
    import copy

    from trainer.models.norms import use_fast_rms_norm

    batch = padded(rows([7, 19, 3, 12]))
    plain = tiny_qwen3()
    with torch.no_grad():  # norms away from their initial ones, so the weight's part shows
        for name, param in plain.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    fast = copy.deepcopy(plain)
    # per layer: input, post-attention, query and key norms; and the final norm
    assert use_fast_rms_norm(fast) == 2 * 4 + 1
    assert use_fast_rms_norm(fast) == 0  # idempotent
    assert "_RMSNorm" in type(fast.model.norm(torch.randn(2, 64, requires_grad=True)).grad_fn).__name__
    loss_plain, grads_plain = loss_and_grads(plain, batch)
    loss_fast, grads_fast = loss_and_grads(fast, batch)
    assert torch.allclose(loss_fast, loss_plain, atol=1e-6)
    for name, grad in grads_plain.items():
        assert torch.allclose(grads_fast[name], grad, atol=1e-6), name
    # a copy (a reference model) runs its own weights, not the original's
    twin = copy.deepcopy(fast)
    assert twin.model.norm.forward.__self__ is twin.model.norm
    # frozen norms (LoRA): the input's gradient alone, still the module's
    for model in (plain, fast):
        for name, param in model.named_parameters():
            param.requires_grad_(not name.endswith("norm.weight"))
    for model in (plain, fast):
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
    frozen = {name: p.grad for name, p in fast.named_parameters()}
    for name, param in plain.named_parameters():
        assert (param.grad is None) == name.endswith("norm.weight") == (frozen[name] is None), name
        if param.grad is not None:
            assert torch.allclose(frozen[name], param.grad, atol=1e-6), name


def test_fast_rms_norm_leaves_other_norms_and_dtypes_to_the_module():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    from trainer.models.norms import use_fast_rms_norm

    gemma = torch.nn.Sequential(GemmaRMSNorm(8))  # scales by 1 + weight: not Llama's formula
    assert use_fast_rms_norm(gemma) == 0
    norm = torch.nn.Sequential(Qwen3RMSNorm(8))
    assert use_fast_rms_norm(norm) == 1
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    # bf16 in: the module's own forward (it rounds to bf16 before the weight, which the fast one does not)
    assert torch.equal(norm(x), Qwen3RMSNorm.forward(norm[0], x))


def test_a_model_with_fast_norms_compiles_as_one_graph():
    from trainer.models.norms import use_fast_rms_norm

    model = tiny_qwen3()
    assert use_fast_rms_norm(model)
    batch = padded(rows([5, 9]))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(**batch)
    assert explained.graph_break_count == 0, explained.break_reasons


def test_a_model_loaded_onto_the_cpu_gets_the_fast_norms(tiny_model_dir):
    from trainer.config import create_default_config
    from trainer.models.loading import load_model

    model = load_model(tiny_model_dir, create_default_config(), "cpu", "float32")
    assert "forward" in vars(model.model.norm)
