"""The parts of transformer/ against PyTorch's own ops and against the formulas: scaled dot-product attention
(torch's sdpa), multi-head attention (nn.MultiheadAttention with the same weights), sinusoidal positions (the
paper's formula), a whole LM (GPT-2 of transformers with the same weights); the KV cache against recomputation;
the Mixture of Experts against the dense FFN, its routing, capacity and load-balancing loss; gradcheck.

Each comparison prints its max abs difference (``pytest -s``) and asserts the tolerance beside it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer.attention import MultiHeadAttention, scaled_dot_product_attention
from transformer.block import Block
from transformer.feed_forward import FeedForward
from transformer.model import TransformerConfig, TransformerLM, causal_mask
from transformer.moe import MixtureOfExperts
from transformer.position import sinusoidal_table

TINY = TransformerConfig(vocab_size=97, context_length=32, n_layers=2, n_heads=4, d_model=32, d_ff=64)


def within(what: str, diff: float, tolerance: float) -> bool:
    """Print the measured difference (the figures behind the parity claims) and whether it is within tolerance."""
    print(f"\n{what}: max abs diff {diff:.2e} (tolerance {tolerance:.0e})")
    return diff <= tolerance


def model(**changes: object) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(**{**TINY.__dict__, **changes})).eval()


def test_attention_equals_torch_sdpa() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    mask = causal_mask(5, 2, torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]]), torch.device("cpu"))
    for name, m in (("no mask", None), ("causal + padding mask", mask)):
        out, weights = scaled_dot_product_attention(q, k, v, m)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        assert within(f"sdpa output vs torch ({name})", float((out - expected).abs().max()), 1e-6)
        assert torch.allclose(weights.sum(dim=-1), torch.ones(2, 3, 5), atol=1e-6)
    assert mask is not None
    assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()  # masked keys get exactly 0
    assert weights[1, :, :, :2].abs().max() == 0  # the padded keys of row 1


def test_multi_head_attention_equals_nn_multiheadattention() -> None:
    torch.manual_seed(0)
    ours, theirs = MultiHeadAttention(32, 4).eval(), nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(theirs.in_proj_weight)
        ours.qkv.bias.copy_(theirs.in_proj_bias)
        ours.out.weight.copy_(theirs.out_proj.weight)
        ours.out.bias.copy_(theirs.out_proj.bias)
        x = torch.randn(2, 6, 32)
        mask = causal_mask(6, 0, None, torch.device("cpu"))
        out, _, weights = ours(x, mask)
        expected, expected_weights = theirs(x, x, x, attn_mask=~mask[0, 0], need_weights=True,
                                            average_attn_weights=False)  # their bool mask: True = hidden
    assert within("multi-head attention output vs nn.MultiheadAttention", float((out - expected).abs().max()), 1e-5)
    assert within("multi-head attention weights vs nn.MultiheadAttention",
                  float((weights - expected_weights).abs().max()), 1e-5)


def test_sinusoidal_positions_follow_the_formula() -> None:
    table = sinusoidal_table(64, 16)
    expected = torch.tensor([[math.sin(p / 10000 ** (i / 16)) if i % 2 == 0 else math.cos(p / 10000 ** ((i - 1) / 16))
                              for i in range(16)] for p in range(64)], dtype=torch.float64)
    assert within("sinusoidal table vs the formula", float((table.double() - expected).abs().max()), 1e-7)
    assert table.dtype == torch.float32 and torch.equal(table[0, 1::2], torch.ones(8))  # cos(0) = 1


def copy_gpt2(gpt2: nn.Module, ours: TransformerLM) -> None:
    """GPT-2's weights into a learned-position TransformerLM (Conv1D stores [in, out]: transposed)."""
    source = gpt2.transformer
    with torch.no_grad():
        ours.embed.weight.copy_(source.wte.weight)
        ours.position.table.weight.copy_(source.wpe.weight)
        ours.ln_f.load_state_dict(source.ln_f.state_dict())
        for block, layer in zip(ours.blocks, source.h, strict=True):
            block.ln1.load_state_dict(layer.ln_1.state_dict())
            block.ln2.load_state_dict(layer.ln_2.state_dict())
            pairs = [(block.attention.qkv, layer.attn.c_attn), (block.attention.out, layer.attn.c_proj),
                     (block.ffn.up, layer.mlp.c_fc), (block.ffn.down, layer.mlp.c_proj)]
            for linear, conv in pairs:
                linear.weight.copy_(conv.weight.T)
                linear.bias.copy_(conv.bias)


def test_lm_with_gpt2_weights_equals_transformers_gpt2() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    config = GPT2Config(vocab_size=97, n_positions=32, n_layer=2, n_head=4, n_embd=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager")
    gpt2 = GPT2LMHeadModel(config).eval()
    ours = model(position="learned", d_ff=128)  # GPT-2's FFN is 4 x n_embd
    copy_gpt2(gpt2, ours)
    ids = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        expected = gpt2(input_ids=ids, output_attentions=True)
        got = ours(ids, output_attentions=True)
    assert within("LM logits vs transformers' GPT-2 (same weights)",
                  float((got.logits - expected.logits).abs().max()), 1e-5)
    assert got.attentions is not None
    assert within("LM attentions vs transformers' GPT-2",
                  float((got.attentions - torch.stack(expected.attentions)).abs().max()), 1e-6)


@pytest.mark.parametrize("experts", [0, 4])
def test_kv_cache_decoding_equals_full_recomputation(experts: int) -> None:
    lm = model(n_experts=experts, position="sinusoidal" if experts else "learned")
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        full = lm(ids)
        step = lm(ids[:, :6])
        logits = [step.logits]
        for i in range(6, 10):
            step = lm(ids[:, i:i + 1], past=step.present)
            logits.append(step.logits)
    assert within(f"KV-cache logits vs full recomputation ({experts} experts)",
                  float((torch.cat(logits, dim=1) - full.logits).abs().max()), 1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(step.present, full.present, strict=True))
    # nanoGPT's loop without a cache (the whole text again for every token) picks the same greedy tokens
    naive = ids[:1, :4]
    with torch.no_grad():
        for _ in range(8):
            naive = torch.cat([naive, lm(naive).logits[:, -1:].argmax(dim=-1)], dim=1)
    assert torch.equal(lm.generate(ids[:1, :4], 8, temperature=0), naive)


def test_left_padding_with_own_positions_changes_nothing() -> None:
    lm = model(n_experts=4)
    ids = torch.randint(1, 97, (1, 5))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    with torch.no_grad():
        alone = lm(ids).logits
        batched = lm(padded, attention_mask=torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]]),
                     position_ids=torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4]])).logits[:, 3:]
    assert within("left-padded row vs the row alone", float((batched - alone).abs().max()), 1e-5)


def test_moe_whose_experts_are_one_ffn_equals_the_dense_model() -> None:
    dense, moe = model(), model(n_experts=4, top_k=2)
    moe.load_state_dict(dense.state_dict(), strict=False)  # everything but the experts and routers
    for dense_block, moe_block in zip(dense.blocks, moe.blocks, strict=True):
        for expert in moe_block.ffn.experts:
            expert.load_state_dict(dense_block.ffn.state_dict())
    ids = torch.randint(0, 97, (2, 9))
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        assert within("MoE block (identical experts) vs dense block",
                      float((moe.blocks[0](x)[0] - dense.blocks[0](x)[0]).abs().max()), 1e-6)
        assert within("MoE LM (identical experts) vs dense LM",
                      float((moe(ids).logits - dense(ids).logits).abs().max()), 1e-5)


def test_moe_sends_each_token_to_its_top_k_experts() -> None:
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 16, n_experts=4, top_k=2).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        out, routing = moe(x)
        logits = moe.router(x)
        top, chosen = logits.topk(2, dim=-1)
        gates = top.softmax(dim=-1)
        expected = sum(gates[..., j, None] * torch.stack([torch.stack([moe.experts[int(chosen[b, s, j])](x[b, s])
                                                                       for s in range(5)]) for b in range(3)])
                       for j in range(2))
    assert torch.equal(routing.experts, chosen) and routing.experts.shape == (3, 5, 2)
    assert (routing.experts[..., 0] != routing.experts[..., 1]).all()
    assert within("MoE output vs experts run one token at a time", float((out - expected).abs().max()), 1e-6)
    assert routing.dropped == 0 and torch.isclose(routing.load.sum(), torch.tensor(1.0))


def test_moe_capacity_drops_second_choices_first() -> None:
    moe = MixtureOfExperts(2, 4, n_experts=2, top_k=2, capacity_factor=1.0).train()
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(2))  # router logits = the token itself
    x = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])  # tokens 0, 1 prefer expert 0; 2, 3 expert 1
    out, routing = moe(x)  # capacity ceil(1.0 * 4 tokens * 2 choices / 2 experts) = 4: each expert takes all 4
    assert routing.dropped == 0
    moe.capacity_factor = 0.5  # capacity 2: each expert keeps its 2 first choices, the 2 second choices are dropped
    out, routing = moe(x)
    assert routing.dropped == 4
    gate = torch.softmax(torch.tensor([2.0, 0.0]), dim=0)[0]
    expected = torch.stack([gate * moe.experts[int(e)](x[0, t]) for t, e in enumerate([0, 0, 1, 1])])
    assert within("MoE output with the second choices dropped", float((out[0] - expected).abs().max()), 1e-6)


def test_moe_load_balancing_loss_on_a_hand_made_example() -> None:
    moe = MixtureOfExperts(2, 4, n_experts=2, top_k=1).eval()
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(2))
    ln3 = math.log(3.0)  # router probabilities 3/4 and 1/4
    skewed = torch.tensor([[[ln3, 0.0], [ln3, 0.0], [ln3, 0.0], [0.0, ln3]]])
    # f = (3/4, 1/4); P = ((3 * 3/4 + 1/4) / 4, (3 * 1/4 + 3/4) / 4) = (5/8, 3/8); 2 * (3/4 * 5/8 + 1/4 * 3/8) = 9/8
    assert moe(skewed)[1].aux_loss.item() == pytest.approx(9 / 8, abs=1e-6)
    assert moe(skewed)[1].load.tolist() == [0.75, 0.25]
    balanced = torch.tensor([[[ln3, 0.0], [0.0, ln3]]])
    assert moe(balanced)[1].aux_loss.item() == pytest.approx(1.0, abs=1e-6)


def test_gradcheck_attention_ffn_and_block() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = causal_mask(4, 0, None, torch.device("cpu"))
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask)[0], (q, k, v))
    ffn = FeedForward(4, 8).double()
    assert torch.autograd.gradcheck(ffn, (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),))
    block = Block(8, 2, 16).double()
    x = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: block(t, causal_mask(3, 0, None, torch.device("cpu")))[0], (x,))
