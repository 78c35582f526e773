"""A tiny chat model: the tiny GPT-2 fixture's recipe with a ChatML chat template saved with its tokenizer."""

from __future__ import annotations

from pathlib import Path

from tests.lm_helpers import CONTEXT, LINES

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


def make_tiny_chat_artifact(models_dir: Path, name: str = "tiny-chat") -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.export.text_generation import export_lm
    from training.language_model.causal_lm import gpt2_config
    from training.language_model.corpus import train_tokenizer

    tokenizer = train_tokenizer(LINES * 4, vocab_size=320, max_length=CONTEXT * 2)
    tokenizer.chat_template = CHATML
    torch.manual_seed(1)
    config = gpt2_config("tiny", len(tokenizer), CONTEXT * 2, int(tokenizer.eos_token_id))
    model = GPT2LMHeadModel(GPT2Config(**config)).eval()
    return export_lm(model, tokenizer, models_dir, name, base_model="gpt2-tiny (random, chat test fixture)",
                     context_length=CONTEXT * 2, metrics={"perplexity": float(len(tokenizer))},
                     training={"note": "untrained test fixture"}, onnx=True)
