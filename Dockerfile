# itmstream: real-time inverse tone mapping (SDR -> HDR10) service image.
#
# Two stages: `build` installs the package and its runtime dependencies (LiteRT, never TensorFlow) into a
# virtualenv; the final stage copies only that virtualenv onto a clean base and runs as an unprivileged user.
# Ray (the 'ray' extra) is in the image too: the chart's optional RayCluster runs its head and segment
# workers from this same image, so driver and workers always have the same Ray, Python and operators.
# Works with the legacy builder (no heredocs, RUN --mount or COPY --chmod), as CI here has no BuildKit.
#
#   docker build -t itmstream .
#   docker run -p 8000:8000 -v itm-data:/data -e ITM_API_KEYS="$(openssl rand -hex 24)" itmstream
#
# The image listens on 0.0.0.0, so `itmstream serve` refuses to start without ITM_API_KEYS (bearer keys for
# /v1/*; probes, /metrics and the demo page stay open) unless ITM_ALLOW_ANONYMOUS=true is set on purpose.
#
# Behind a TLS-intercepting proxy pass its CA bundle (a path inside the build's base image or context):
#   docker build --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt ...

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build

ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
WORKDIR /src
# Metadata first, then sources: the dependency layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
COPY service/__init__.py service/__init__.py
COPY models/__init__.py models/__init__.py
COPY clients/__init__.py clients/__init__.py
# An empty PIP_CERT must not reach pip (it would mean "no CA at all"), hence the unset.
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && /opt/venv/bin/pip install --upgrade "pip>=24" \
    && /opt/venv/bin/pip install ".[ray]"
COPY service/ service/
COPY models/ models/
COPY clients/ clients/
# Reinstall the project itself (dependencies are already satisfied), bundling models/artifacts/*.tflite|json.
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && /opt/venv/bin/pip install --no-deps --force-reinstall . \
    && /opt/venv/bin/python -c "import service.app, av, numba, ai_edge_litert, ray" \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="itmstream" \
      org.opencontainers.image.description="Real-time inverse tone mapping: SDR video and frames to HDR10" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid so Kubernetes runAsNonRoot can verify it and volumes can be pre-chowned.
RUN groupadd --system --gid 10001 itm \
    && useradd --system --uid 10001 --gid itm --home-dir /data --no-create-home --shell /usr/sbin/nologin itm \
    && mkdir -p /data /tmp/numba \
    && chown itm:itm /data /tmp/numba

COPY --from=build /opt/venv /opt/venv

# NUMBA_CACHE_DIR: numba's cache=True writes next to the sources by default, which are read-only here.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba \
    ITM_HOST=0.0.0.0 \
    ITM_PORT=8000 \
    ITM_DATA_DIR=/data \
    ITM_LOG_LEVEL=INFO

VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8000

# Liveness only (the event loop answers); readiness (/readyz) is for load balancers and Kubernetes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ITM_PORT', '8000'), timeout=2)"]

# SIGTERM makes uvicorn drain: readiness flips to 503, streams finish in-flight frames, jobs stop.
STOPSIGNAL SIGTERM
CMD ["itmstream", "serve"]
