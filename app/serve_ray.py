"""Ray Serve: the same service (`create_app`, the one `Settings`, every route) as N replicas behind Ray's proxy.

    make serve-ray REPLICAS=2                       # a local Ray instance, http://127.0.0.1:8000
    python -m app.serve_ray --replicas 2            # the same; --min-replicas/--max-replicas: autoscaling
    RAY_ADDRESS=ray://head:10001 make serve-ray     # `serve run` on an existing cluster
    serve deploy deploy/ray/serve.yaml --address http://head:8265     # declaratively (Ray's dashboard address)

`deploy/ray/serve.yaml` is a Serve config file (`serve run` / `serve deploy` read it as it is): the application's
import path is `build` below, its deployment section sets the replicas (or autoscaling), `max_ongoing_requests` and
the CPUs/GPUs of each replica, its runtime_env the `APP_*` settings of the replicas. `python -m app.serve_ray`
applies command-line overrides to that file, writes the result beside the runs and hands it to `serve run`.

Each replica is one process that builds the app with `create_app()`: Ray Serve runs a FastAPI ingress's lifespan
in each replica (startup when the replica starts, shutdown when it stops), so each replica loads and warms the
models once. `ReplicaApp` holds the replica's start-up until warm-up has finished (Ray sends it no traffic before)
and names the replica in an `X-Replica` header on every response.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from ray import serve
from ray.serve import Application, Deployment
from starlette.types import Message, Receive, Scope, Send

from app.main import create_app

log = logging.getLogger("app.serve_ray")

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "ray" / "serve.yaml"
DEPLOYMENT = "TransformerStack"
REPLICA_HEADER = b"x-replica"
WARM_TIMEOUT_S = 900.0


class ReplicaApp:
    """The service's ASGI app as one replica serves it: responses name the replica, and the lifespan's start-up
    completes only once every model is warm (or failed), so that Ray routes nothing to a cold replica."""

    def __init__(self, app: FastAPI, replica: str, warm_timeout_s: float = WARM_TIMEOUT_S) -> None:
        self.app, self.replica, self.warm_timeout_s = app, replica.encode(), warm_timeout_s

    def add_exception_handler(self, exc_class: type[Exception], handler: Any) -> None:
        """Ray Serve maps its back-pressure errors to 503 through this (on the FastAPI app)."""
        self.app.add_exception_handler(exc_class, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._after_warm_up(send))
        elif scope["type"] == "http":
            await self.app(scope, receive, self._named(send))
        else:
            await self.app(scope, receive, send)

    def _named(self, send: Send) -> Send:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER, self.replica)]}
            await send(message)

        return named

    def _after_warm_up(self, send: Send) -> Send:
        async def after_warm_up(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.warmed_up()
            await send(message)

        return after_warm_up

    async def warmed_up(self) -> None:
        registry = self.app.state.service.registry
        deadline = time.monotonic() + self.warm_timeout_s
        while not registry.warmed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("replica %s: warm-up %s, models %s", self.replica.decode(),
                 "done" if registry.warmed else "still running", registry.statuses())


class TransformerStack:
    """One replica: the ASGI app is built in the replica's own process, after this constructor."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # builder arguments, for settings the runtime_env cannot carry; APP_* from runtime_env are already set
        os.environ.update(env or {})

    def __serve_build_asgi_app__(self) -> ReplicaApp:
        replica_id = serve.get_replica_context().replica_id
        return ReplicaApp(create_app(), f"{replica_id.deployment_id.name}#{replica_id.unique_id}")


STACK: Deployment = serve.deployment(name=DEPLOYMENT)(serve.ingress()(TransformerStack))
"""The deployment: `TransformerStack` with the service as its FastAPI (ASGI) ingress."""


def build(args: dict[str, Any]) -> Application:
    """The application builder `deploy/ray/serve.yaml` imports (``app.serve_ray:build``; Ray calls it with the
    config's ``args``).

    ``args``: ``env``, extra environment variables of every replica (e.g. ``APP_*``). Replicas, autoscaling and
    resources are the deployment section of the Serve config.
    """
    return bound(args, {})


def bound(args: dict[str, Any], options: dict[str, Any]) -> Application:
    """`build` with deployment ``options`` (what a Serve config's deployment section sets) given in Python."""
    env = {str(key): str(value) for key, value in (args.get("env") or {}).items()}
    unknown = set(args) - {"env"}
    if unknown:
        raise ValueError(f"unknown builder arguments {sorted(unknown)} (replicas and resources belong in the "
                         "deployment section of the Serve config)")
    return STACK.options(**options).bind(env)


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


def deployment_options(config: dict[str, Any]) -> dict[str, Any]:
    """The options the config's deployment section sets, as `Deployment.options` keywords."""
    application = config["applications"][0]
    section: dict[str, Any] = next((d for d in application.get("deployments", []) if d.get("name") == DEPLOYMENT), {})
    options = {key: value for key, value in section.items() if key != "name"}
    runtime_env = application.get("runtime_env")
    if runtime_env:
        actor = dict(options.get("ray_actor_options", {}))
        actor["runtime_env"] = {**runtime_env, **actor.get("runtime_env", {})}
        options["ray_actor_options"] = actor
    return options


def application(config: dict[str, Any]) -> Application:
    """The bound application of a Serve config, in Python: what `serve run` makes of the same file (for
    ``serve.run`` in tests and benchmarks)."""
    return bound(config["applications"][0].get("args") or {}, deployment_options(config))


def override(config: dict[str, Any], replicas: int | None = None, min_replicas: int | None = None,
             max_replicas: int | None = None, target_ongoing: float | None = None, num_cpus: float | None = None,
             num_gpus: float | None = None, host: str | None = None, port: int | None = None,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of a Serve config with the command line's choices in its (first) application and deployment."""
    config = copy.deepcopy(config)
    application = config["applications"][0]
    deployments = application.setdefault("deployments", [])
    section: dict[str, Any] | None = next((d for d in deployments if d.get("name") == DEPLOYMENT), None)
    if section is None:
        section = {"name": DEPLOYMENT}
        deployments.append(section)
    if min_replicas is not None or max_replicas is not None or target_ongoing is not None:
        scaling = section.setdefault("autoscaling_config", {})
        for key, value in (("min_replicas", min_replicas), ("max_replicas", max_replicas),
                           ("target_ongoing_requests", target_ongoing)):
            if value is not None:
                scaling[key] = value
        section["num_replicas"] = "auto"
    if replicas is not None:
        section["num_replicas"] = replicas
        section.pop("autoscaling_config", None)
    actor = section.setdefault("ray_actor_options", {})
    if num_cpus is not None:
        actor["num_cpus"] = num_cpus
    if num_gpus is not None:
        actor["num_gpus"] = num_gpus
    variables = application.setdefault("runtime_env", {}).setdefault("env_vars", {})
    variables.update(env or {})
    if num_cpus is not None and "APP_THREADS" not in (env or {}):
        variables["APP_THREADS"] = str(max(1, int(num_cpus)))
    models = variables.get("APP_MODELS_DIR")
    if models and not Path(models).is_absolute():  # replicas do not run in this folder
        variables["APP_MODELS_DIR"] = str(Path(models).resolve())
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.serve_ray", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="Serve config file (default %(default)s)")
    parser.add_argument("--replicas", type=int, help="fixed number of replicas (drops autoscaling)")
    parser.add_argument("--min-replicas", type=int, help="autoscaling: fewest replicas")
    parser.add_argument("--max-replicas", type=int, help="autoscaling: most replicas")
    parser.add_argument("--target-ongoing", type=float, help="autoscaling: target ongoing requests per replica")
    parser.add_argument("--num-cpus", type=float, help="CPUs per replica (also its APP_THREADS)")
    parser.add_argument("--num-gpus", type=float, help="GPUs per replica (set APP_DEVICE=cuda too)")
    parser.add_argument("--host", help="interface of Ray's HTTP proxy (default: the config's)")
    parser.add_argument("--port", type=int, help="port of Ray's HTTP proxy (default: the config's)")
    parser.add_argument("--deploy", action="store_true", help="`serve deploy` to the cluster whose dashboard is at "
                        "RAY_DASHBOARD_ADDRESS and return, instead of `serve run` (RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--print", action="store_true", dest="print_only", help="print the config and exit")
    args = parser.parse_args(argv)
    env = {key: value for key, value in os.environ.items() if key.startswith("APP_")}
    config = override(load_config(args.config), args.replicas, args.min_replicas, args.max_replicas,
                      args.target_ongoing, args.num_cpus, args.num_gpus, args.host, args.port, env)
    text = yaml.safe_dump(config, sort_keys=False)
    if args.print_only:
        print(text, end="")
        return 0
    serve_cli = shutil.which("serve", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if serve_cli is None:
        print("error: the `serve` command is missing: pip install -e '.[ray]'", file=sys.stderr)
        return 2
    handle, name = tempfile.mkstemp(prefix="serve-", suffix=".yaml")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    target = (f"RAY_DASHBOARD_ADDRESS={os.environ.get('RAY_DASHBOARD_ADDRESS', 'http://localhost:8265')}"
              if args.deploy else f"RAY_ADDRESS={os.environ.get('RAY_ADDRESS', '(a new local Ray instance)')}")
    print(f"==> Serve config {name} ({'serve deploy' if args.deploy else 'serve run'}; {target})", flush=True)
    os.execv(serve_cli, [serve_cli, "deploy" if args.deploy else "run", name])


if __name__ == "__main__":
    sys.exit(main())
