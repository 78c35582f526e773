"""deploy/k8s, offline: the kustomize overlays rendered in Python (and compared with `kubectl kustomize` where that
binary exists), every core object validated against the OpenAPI schemas of a pinned Kubernetes version
(kubernetes-validate, strict: unknown fields fail), the service's own conventions checked, and the KServe
InferenceService checked structurally (its pod spec against the core Pod schema)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.33.0"
OVERLAYS = ["cpu", "gpu"]
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}
"""Lists that a strategic merge patch merges by key (the Kubernetes patchMergeKey); others are replaced."""
Obj = dict[str, Any]


def load_all(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def merge(base: Any, patch: Any, key: str | None = None) -> Any:
    """Strategic merge: maps deep-merged, keyed lists merged by key (patched items first, as kustomize writes them),
    other lists and scalars replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for name, value in patch.items():
            out[name] = merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        field = MERGE_KEYS[key]
        originals = {item[field]: item for item in base}
        patched = [merge(originals[item[field]], item) if item[field] in originals else item for item in patch]
        names = {item[field] for item in patch}
        return patched + [item for item in base if item[field] not in names]
    return copy.deepcopy(patch)


def set_images(obj: Obj, images: list[Obj]) -> None:
    spec = obj.get("spec", {}).get("template", {}).get("spec", obj.get("spec", {}))
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        name, _, tag = container["image"].partition(":")
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"


def render(folder: Path) -> list[Obj]:
    """The objects of a kustomization: its resources (files, or folders with a kustomization), patches, images."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        objects += render(path) if path.is_dir() else load_all(path)
    for patch_entry in kustomization.get("patches", []):
        for patch in load_all(folder / patch_entry["path"]):
            index = next(i for i, obj in enumerate(objects) if (obj["kind"], obj["metadata"]["name"]) == (
                patch["kind"], patch["metadata"]["name"]))
            objects[index] = merge(objects[index], patch)
    for obj in objects:
        set_images(obj, kustomization.get("images", []))
    return objects


def by_kind(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}


def env_of(container: Obj) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, dict[tuple[str, str], Obj]]:
    return request.param, by_kind(render(K8S / "overlays" / request.param))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl: the Python rendering stands alone")
@pytest.mark.parametrize("name", OVERLAYS)
def test_the_python_rendering_is_what_kubectl_kustomize_renders(name: str) -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / name)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert by_kind([doc for doc in yaml.safe_load_all(result.stdout) if doc]) == by_kind(
        render(K8S / "overlays" / name))


def test_every_object_is_valid_for_the_pinned_kubernetes(overlay: tuple[str, dict[tuple[str, str], Obj]]) -> None:
    _, objects = overlay
    assert {kind for kind, _ in objects} == {"Deployment", "Service", "HorizontalPodAutoscaler", "Job",
                                             "PersistentVolumeClaim", "PodDisruptionBudget"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_validator_rejects_a_broken_deployment(overlay: tuple[str, dict[tuple[str, str], Obj]]) -> None:
    broken = copy.deepcopy(overlay[1][("Deployment", "transformer-stack")])
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    unknown = copy.deepcopy(overlay[1][("Deployment", "transformer-stack")])
    unknown["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo: strict mode catches it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES, strict=True)


def test_the_api_pods_probe_run_unprivileged_and_write_only_tmp(
        overlay: tuple[str, dict[tuple[str, str], Obj]]) -> None:
    _, objects = overlay
    pod = objects[("Deployment", "transformer-stack")]["spec"]["template"]["spec"]
    api = next(c for c in pod["containers"] if c["name"] == "api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and container["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in api["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]] and mounts["/models"]["readOnly"] is True
    assert env_of(api)["APP_MODELS_DIR"] == "/models" and env_of(api)["APP_PORT"] == "8000"


def test_service_autoscaler_and_models_job_point_at_the_same_things(
        overlay: tuple[str, dict[tuple[str, str], Obj]]) -> None:
    _, objects = overlay
    deployment = objects[("Deployment", "transformer-stack")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects[("Service", "transformer-stack")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = objects[("HorizontalPodAutoscaler", "transformer-stack")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "transformer-stack"}
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    claim = "transformer-stack-models"
    assert ("PersistentVolumeClaim", claim) in objects
    job = objects[("Job", "transformer-stack-models")]["spec"]["template"]["spec"]
    for pod in (job, deployment["spec"]["template"]["spec"]):
        assert any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in pod["volumes"])
    script = job["containers"][0]["args"][0]
    waited = env_of(deployment["spec"]["template"]["spec"]["initContainers"][0])["MODELS"].split()
    for name in waited:  # the API waits for exactly what the Job builds
        assert f"/models/{name}/manifest.json" in script, name
    for verb in ("sentiment", "distill", "lm", "import_gguf", "embedding"):
        assert f"python -m training {verb} " in script


def test_the_overlays_differ_in_image_device_and_gpus(overlay: tuple[str, dict[tuple[str, str], Obj]]) -> None:
    name, objects = overlay
    pod = objects[("Deployment", "transformer-stack")]["spec"]["template"]["spec"]
    api = next(c for c in pod["containers"] if c["name"] == "api")
    images = {c["image"] for c in [*pod["containers"], *pod["initContainers"]]}
    images |= {c["image"] for c in objects[("Job", "transformer-stack-models")]["spec"]["template"]["spec"][
        "containers"]}
    assert images == {f"transformer-stack:{name}"}
    gpus = api["resources"]["limits"].get("nvidia.com/gpu")
    if name == "gpu":
        assert gpus == "1" and env_of(api)["APP_DEVICE"] == "cuda"
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    else:
        assert gpus is None and env_of(api)["APP_DEVICE"] == "cpu" and "tolerations" not in pod
    assert len(api["env"]) == len(env_of(api)), "a variable is set twice"


def test_the_kserve_inference_service_runs_our_image_on_the_v2_protocol() -> None:
    (service,) = load_all(K8S / "kserve" / "inferenceservice.yaml")
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["image"].startswith("transformer-stack:")
    assert container["ports"][0]["containerPort"] == 8000
    env = env_of(container)
    assert env["PROTOCOL"] == "v2"  # KServe's CustomPredictor reads the protocol from this variable
    assert env["STORAGE_URI"] == "pvc://transformer-stack-models/" and env["APP_MODELS_DIR"] == "/mnt/models"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    # the predictor's inline pod spec must be a valid core Pod spec
    pod_fields = {key: value for key, value in predictor.items() if key not in {"minReplicas", "maxReplicas"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod_fields}
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)


def test_the_v2_routes_the_probes_use_exist() -> None:
    from app.main import create_app

    paths = set(create_app().openapi()["paths"])
    assert {"/v2/health/ready", "/v2/health/live", "/health/ready", "/health/live"} <= paths
