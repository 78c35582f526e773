"""The embedding graph's pooling (padding ignored, unit norm) and the check on a sentence-transformers folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from training.config import default_base_model
from training.export.sentence_embedding import MeanPooledEmbeddings
from training.verbs.embedding import require_mean_pooling


def test_padding_changes_nothing_and_vectors_have_unit_norm(tiny_base: Path) -> None:
    graph = MeanPooledEmbeddings(AutoModel.from_pretrained(tiny_base).eval())
    ids = torch.tensor([[2, 5, 9, 13, 3, 0, 0], [2, 7, 3, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        batch = graph(ids, mask)
        alone = [graph(ids[i:i + 1, :int(mask[i].sum())], mask[i:i + 1, :int(mask[i].sum())])[0] for i in range(2)]
        hidden = graph.encoder(input_ids=ids[:1, :5]).last_hidden_state[0]
    assert batch.shape == (2, 32)
    torch.testing.assert_close(batch, torch.stack(alone), rtol=0, atol=1e-6)
    torch.testing.assert_close(batch.norm(dim=1), torch.ones(2), rtol=0, atol=1e-6)
    mean = hidden.mean(dim=0)
    torch.testing.assert_close(batch[0], mean / mean.norm(), rtol=0, atol=1e-6)


def sentence_transformers_folder(path: Path, pooling: dict[str, bool], normalize: bool = True) -> Path:
    modules = [{"type": "sentence_transformers.models.Transformer", "path": ""},
               {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]
    if normalize:
        modules.append({"type": "sentence_transformers.models.Normalize", "path": "2_Normalize"})
    (path / "1_Pooling").mkdir(parents=True)
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **pooling}))
    return path


MEAN = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}


def test_the_minilm_package_and_plain_folders_pass(tmp_path: Path) -> None:
    packaged = Path(default_base_model())
    assert (packaged / "modules.json").is_file(), "the package is a sentence-transformers folder: its pooling is read"
    require_mean_pooling(packaged)  # raises unless mean pooling then Normalize
    require_mean_pooling(tmp_path)  # no modules.json: a plain HF folder
    require_mean_pooling(sentence_transformers_folder(tmp_path / "mean", MEAN))


@pytest.mark.parametrize(("pooling", "normalize"), [
    ({**MEAN, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}, True),
    ({**MEAN, "pooling_mode_max_tokens": True}, True),
    (MEAN, False),
])
def test_other_pooling_is_refused(tmp_path: Path, pooling: dict[str, bool], normalize: bool) -> None:
    with pytest.raises(ValueError, match="not mean pooling then Normalize"):
        require_mean_pooling(sentence_transformers_folder(tmp_path, pooling, normalize))
