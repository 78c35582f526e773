"""Command line: `python -m training <verb> [--config recipe.yaml] [--section.field value ...]`.

The verb table: each verb is the typed function of its module in training/verbs/ (its name is the verb, its
arguments the flags, its docstring the help).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from jsonargparse import CLI, set_parsing_settings

from training.distributed import release_process_group
from training.verbs.distill import distill
from training.verbs.embedding import embedding
from training.verbs.export import export
from training.verbs.import_gguf import import_gguf
from training.verbs.lm import lm
from training.verbs.ppo import ppo
from training.verbs.quantize import quantize
from training.verbs.sentiment import sentiment
from training.verbs.transformer_lm import transformer_lm

VERBS: list[Callable[..., Path]] = [sentiment, distill, export, quantize, lm, import_gguf, embedding, ppo,
                                   transformer_lm]


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript"):  # the exporter's optimiser logs every rewrite at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # `--model.help` shows each field's docstring
    try:
        CLI(VERBS, as_positional=False, prog="python -m training")
    finally:  # every rank, also after an error, so that the real traceback is not followed by an abort
        release_process_group()


if __name__ == "__main__":
    main()
