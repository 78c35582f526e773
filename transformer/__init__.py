"""A Transformer language model built from its parts, nanoGPT-style: model code only (torch, no I/O).

Read in this order: `attention` (scaled dot-product and multi-head attention), `position` (sinusoidal or
learned positions), `feed_forward` (the position-wise FFN), `moe` (a Mixture-of-Experts FFN), `block` (one
pre-LN layer), `model` (`TransformerConfig`, `TransformerLM`). `training/` trains and exports it, `app/` serves
it; neither imports the other, both import this package.
"""
