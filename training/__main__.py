"""Command line: `python -m training <verb> [--config recipe.yaml] [--section.field value ...]`."""

from __future__ import annotations

import logging
import os
import warnings


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    from jsonargparse import CLI

    from training.distill import distill
    from training.export import export
    from training.gguf_import import import_gguf
    from training.lm import lm
    from training.quantize import quantize
    from training.sentiment import sentiment

    CLI([sentiment, distill, export, quantize, lm, import_gguf], as_positional=False)


if __name__ == "__main__":
    main()
