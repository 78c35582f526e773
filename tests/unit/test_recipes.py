"""Artifact names are defined once: each Makefile model target is the folder its recipe (or verb default) writes."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from training.__main__ import VERBS
from training.language_model.causal_lm import PRESETS

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = REPO / "Makefile"
PROFILES = sorted({p.stem.rsplit("-", 1)[1] for p in (REPO / "training" / "configs").glob("*-*.yaml")})
VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$")
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)(?::([^=)]*)=([^)]*))?\)")


def expand(text: str, variables: dict[str, str]) -> str:
    """Make's $(NAME) and $(NAME:suffix=replacement), repeated until nothing changes."""
    def one(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), match.group(0))
        if match.group(2) is not None and value.endswith(match.group(2)):
            value = value[: len(value) - len(match.group(2))] + match.group(3)
        return value

    while (expanded := REFERENCE.sub(one, text)) != text:
        text = expanded
    return text


@dataclass
class ModelTarget:
    target: str
    command: str


def model_targets(profile: str, models_dir: str = "models") -> list[ModelTarget]:
    """Every rule of the Makefile whose target is <models_dir>/<name>/manifest.json, with its `python -m training`
    command (continuation lines joined), variables expanded for ``profile``."""
    lines = MAKEFILE.read_text().replace("\\\n", " ").splitlines()
    variables = {"PROFILE": profile, "MODELS_DIR": models_dir, "BIN": ".venv/bin"}
    for line in lines:
        if (match := VARIABLE.match(line)) and match.group(1) not in variables:
            variables[match.group(1)] = match.group(2).split("#")[0].strip()
    targets = []
    for i, line in enumerate(lines):
        if line.startswith("\t") or ":" not in line or VARIABLE.match(line):
            continue
        target = expand(line.split(":", 1)[0].strip(), variables)
        if not (target.startswith(f"{models_dir}/") and target.endswith("/manifest.json")):
            continue
        recipe = []
        for body in lines[i + 1:]:
            if not body.startswith("\t"):
                break
            recipe.append(body.strip())
        command = next(expand(c, variables) for c in recipe if " -m training " in c)
        targets.append(ModelTarget(target, command))
    return targets


def written_name(command: str) -> str:
    """The artifact name the command writes: its recipe's output.name, else the verb's default ``name``."""
    args = command.split(" -m training ", 1)[1].split()
    verb = args[0]
    for flag in ("--output.name", "--name"):
        assert flag not in args, f"{command!r} overrides the name its recipe defines"
    if "--config" in args:
        recipe = yaml.safe_load((REPO / args[args.index("--config") + 1]).read_text())
        return str(recipe["output"]["name"])
    function = next(f for f in VERBS if f.__name__ == verb)
    return str(inspect.signature(function).parameters["name"].default)


def test_profiles_are_found() -> None:
    assert PROFILES == ["full", "quick"]


@pytest.mark.parametrize("profile", PROFILES)
def test_each_model_target_is_the_folder_its_recipe_writes(profile: str) -> None:
    targets = model_targets(profile)
    assert len(targets) == 5, [t.target for t in targets]
    for target in targets:
        folder = target.target.removeprefix("models/").removesuffix("/manifest.json")
        assert written_name(target.command) == folder, (target.target, target.command)
        assert "--output.models_dir models" in target.command or "--models_dir models" in target.command


@pytest.mark.parametrize("profile", PROFILES)
def test_distill_reads_the_teacher_the_sentiment_target_builds(profile: str) -> None:
    targets = {t.command.split(" -m training ", 1)[1].split()[0]: t for t in model_targets(profile, "out")}
    args = targets["distill"].command.split()
    teacher = args[args.index("--distillation.teacher") + 1]
    assert f"{teacher}/manifest.json" == targets["sentiment"].target


def test_every_recipe_names_its_artifact_by_its_profile() -> None:
    for profile in PROFILES:  # the Makefile's lm-$(PROFILE) recipes (lm-reviews-quick is PPO's base: gpt2-reviews)
        path = REPO / "training" / "configs" / f"lm-{profile}.yaml"
        assert yaml.safe_load(path.read_text())["output"]["name"] == f"gpt2-{profile}"


def test_the_ppo_recipe_tunes_the_review_model_its_recipe_writes() -> None:
    configs = REPO / "training" / "configs"
    reviews = yaml.safe_load((configs / "lm-reviews-quick.yaml").read_text())
    tuning = yaml.safe_load((configs / "ppo-quick.yaml").read_text())
    assert tuning["ppo"]["base_model"] == f"models/{reviews['output']['name']}"


@pytest.mark.parametrize("profile", PROFILES)
def test_transformer_recipes_are_comparable_with_gpt2(profile: str) -> None:
    """transformer-<profile> trains as lm-<profile> (same data and trainer sections, same optimiser), and its MoE
    twin differs only by experts whose top-k together are as wide as the dense FFN (the same active size). The dense
    model has the GPT-2 preset's size."""
    def recipe(name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((REPO / "training" / "configs" / f"{name}-{profile}.yaml").read_text())
        return loaded

    gpt2, dense, moe = recipe("lm"), recipe("transformer"), recipe("transformer-moe")
    assert (dense["output"]["name"], moe["output"]["name"]) == (f"transformer-{profile}", f"transformer-moe-{profile}")
    for section in ("data", "trainer"):
        assert gpt2[section] == dense[section] == moe[section], section
    for key in ("context_length", "learning_rate", "warmup_steps"):
        assert gpt2["model"][key] == dense["model"][key] == moe["model"][key], key
    size = PRESETS[gpt2["model"]["preset"]]
    assert (dense["model"]["n_layers"], dense["model"]["n_heads"], dense["model"]["d_model"]) == (
        size["n_layer"], size["n_head"], size["n_embd"])
    assert dense["model"]["d_ff"] == 4 * size["n_embd"]  # GPT-2's MLP width
    assert moe["model"]["top_k"] * moe["model"]["d_ff"] == dense["model"]["d_ff"]
    moe_only = {"n_experts", "top_k", "capacity_factor", "aux_loss_weight"}
    assert {k: v for k, v in moe["model"].items() if k not in moe_only | {"d_ff"}} == {
        k: v for k, v in dense["model"].items() if k != "d_ff"}
    assert moe["model"]["n_experts"] > moe["model"]["top_k"]


@pytest.mark.parametrize("profile", PROFILES)
def test_make_run_recipes_leave_the_data_folder_to_ts_data_dir(profile: str) -> None:
    """A path in a recipe would be read relative to the working directory and win over TS_DATA_DIR: `make run` from
    a clone that is not beside ../shared would stop at that model."""
    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for value in node.values() for s in strings(value)]
        return [node] if isinstance(node, str) else []

    for target in model_targets(profile):
        args = target.command.split()
        if "--config" in args:
            recipe = yaml.safe_load((REPO / args[args.index("--config") + 1]).read_text())
            assert not [s for s in strings(recipe.get("data", {})) if "shared" in s or s.startswith("..")], target


def test_a_sections_help_shows_each_fields_docstring(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m training sentiment --model.help ModelConfig` explains the options, not only their types."""
    import sys

    import training.__main__ as entry

    monkeypatch.setattr(sys, "argv", ["python -m training", "sentiment", "--model.help", "ModelConfig"])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "usage: python -m training" in shown
    assert "Cross-entropy label smoothing of the training loss" in shown
    assert "Skip gradients for the word embeddings" in shown
