"""`training ppo` end to end on a tiny GPT-2 and a tiny classifier artifact: logs per step, the exported artifact and
its rlhf block, the tuned policy served next to its base model by the unchanged app; the reward read from the
classifier's ONNX graph."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from contract import SCHEMA_VERSION, open_artifact
from tests.integration.conftest import serve
from tests.lm_helpers import linked_models_dir
from training.config import OutputConfig, PPOConfig, PromptConfig, RewardConfig, SamplingConfig, TrainerConfig
from training.rlhf.reward import Reward, SentimentScorer
from training.verbs.ppo import ppo

pytestmark = pytest.mark.slow

STEPS, BATCH = 2, 4


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_lm_artifact: Path, tiny_artifact: Path,
          tiny_data: Path) -> Path:
    root = tmp_path_factory.mktemp("ppo")
    return ppo(PPOConfig(base_model=str(tiny_lm_artifact), steps=STEPS, batch_size=BATCH, minibatch_size=2,
                         ppo_epochs=2, learning_rate=1e-2, init_kl_coef=0.1, eval_batch_size=4),
               SamplingConfig(max_new_tokens=4, min_new_tokens=2),
               PromptConfig(train_file=str(tiny_data / "train.tsv"), eval_file=str(tiny_data / "test.tsv"),
                            min_words=2, max_words=3, min_sentence_words=4, eval_prompts=6),
               RewardConfig(model=str(tiny_artifact), variant=None, judge=str(tiny_artifact)),
               TrainerConfig(threads=1),
               OutputConfig(name="tiny-gpt2-ppo", models_dir=str(root / "models"), runs_dir=str(root / "runs")))


def test_the_verb_logs_every_step_and_exports_an_artifact_with_its_rlhf_block(
        tuned: Path, tiny_lm_artifact: Path, tiny_artifact: Path) -> None:
    artifact = open_artifact(tuned)  # schema, name and every checksum verified
    manifest = artifact.manifest
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["task"] == "text-generation"
    assert manifest["base_model"] == "tiny-gpt2"
    assert manifest["generation"] == open_artifact(tiny_lm_artifact).manifest["generation"]
    assert {"model.onnx", "model.attn.onnx", "training_curve.png", "hf/model.safetensors"} <= set(manifest["files"])
    assert "value_head" not in " ".join(load_file(tuned / "hf" / "model.safetensors"))  # the LM alone is exported
    rlhf = manifest["rlhf"]
    reward_model = open_artifact(tiny_artifact)
    assert rlhf["reward_model"] == {"name": "tiny-sentiment", "graph": "model.onnx", "kind": "log_odds",
                                    "manifest_sha256": reward_model.manifest_sha256}
    assert (rlhf["algorithm"], rlhf["target"], rlhf["steps"], rlhf["samples"]) == ("ppo", "positive", STEPS,
                                                                                   STEPS * BATCH)
    assert rlhf["kl_coef"]["initial"] == 0.1 and rlhf["kl_coef"]["final"] != 0.1  # adaptive: it moved
    evaluation = rlhf["evaluation"]
    assert isinstance(evaluation["diversity_collapsed"], bool)
    for when in ("before", "after"):
        result = evaluation[when]
        assert result["prompts"] == 6 and 0 <= result["target_share"] <= 1 and result["perplexity_ref"] >= 1
        assert result["reward_model_share"] == result["target_share"]  # here the judge is the reward model
        assert 0 <= result["distinct_2"] <= 1 and 2 <= result["response_length"] <= 4  # eos held 2 steps
    assert evaluation["before"]["kl"] == 0.0 and evaluation["after"]["kl"] != 0.0
    assert len(evaluation["samples"]) == 5 and set(evaluation["samples"][0]) == {"prompt", "base", "tuned"}
    assert manifest["metrics"]["perplexity"] >= 1 and manifest["metrics"]["split_sizes"]["eval_prompts"] == 6

    run = tuned.parent.parent / "runs" / "tiny-gpt2-ppo"
    rows = [r for r in csv.DictReader((run / "logs" / "version_0" / "metrics.csv").open()) if r.get("ppo/reward")]
    assert len(rows) == STEPS
    for key in ("reward", "kl", "entropy", "clipfrac", "value_loss", "response_length", "samples", "kl_coef"):
        assert all(row[f"ppo/{key}"] != "" for row in rows), key
    assert [float(r["ppo/samples"]) for r in rows] == [BATCH, 2 * BATCH]
    assert (run / "reward_kl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((run / "history.json").read_text())) == STEPS


def test_the_tuned_policy_is_served_next_to_its_base(tmp_path: Path, tuned: Path, tiny_lm_artifact: Path) -> None:
    base_weights, tuned_weights = (load_file(p / "hf" / "model.safetensors") for p in (tiny_lm_artifact, tuned))
    assert any(not bool((base_weights[k] == tuned_weights[k]).all()) for k in base_weights)  # PPO changed it
    with serve(linked_models_dir(tmp_path / "models", tiny_lm_artifact, tuned), runtime="onnx") as client:
        listed = {m["name"]: (m["task"], m["status"]) for m in client.get("/v1/models").json()["models"]}
        assert listed == {"tiny-gpt2": ("text-generation", "ready"), "tiny-gpt2-ppo": ("text-generation", "ready")}
        for name in listed:
            answer = client.post("/v1/generate", json={"model": name, "prompt": "the movie was", "max_new_tokens": 4,
                                                       "temperature": 0})
            assert answer.status_code == 200 and answer.json()["model"] == name, answer.text
            completion = client.post("/v1/completions", json={"model": name, "prompt": "the movie was",
                                                              "max_tokens": 4, "temperature": 0})
            assert completion.status_code == 200, completion.text
            assert completion.json()["choices"][0]["text"] == answer.json()["text"]
            attention = client.post("/v1/attention", json={"model": name, "text": "the movie was good"})
            assert attention.status_code == 200 and attention.json()["prediction"]["type"] == "next_token"


def test_reward_is_the_target_log_odds_or_probability_of_the_onnx_graph(tiny_artifact: Path) -> None:
    scorer = SentimentScorer(tiny_artifact)
    texts = ["the movie was very good .", "a dull and boring plot", "fine"]
    logits = scorer.logits(texts)
    assert logits.shape == (3, 2)
    np.testing.assert_allclose(scorer.scores(texts, "positive"), logits[:, 1] - logits[:, 0], atol=1e-9)
    np.testing.assert_allclose(Reward(scorer, "negative")(texts).numpy(), logits[:, 0] - logits[:, 1], atol=1e-6)
    probability = Reward(scorer, "positive", "probability")(texts).numpy()
    np.testing.assert_allclose(probability, np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1), atol=1e-6)
    assert list(scorer.predicts(texts, "positive")) == list(logits.argmax(axis=1) == 1)
    with pytest.raises(ValueError, match="no ONNX variant 'int8'"):
        SentimentScorer(tiny_artifact, variant="int8")
    with pytest.raises(ValueError, match="no label 'neutral'"):
        Reward(scorer, "neutral")
