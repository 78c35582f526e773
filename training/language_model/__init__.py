"""Causal language modelling: a corpus of .txt documents packed into blocks, the GPT-2 / HF causal-LM module."""
