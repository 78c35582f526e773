"""Causal language modelling: a corpus of .txt documents packed into blocks, the GPT-2 / HF causal-LM module
(causal_lm) and the module of the from-scratch Transformer of transformer/ (scratch_lm)."""
