# syntax=docker/dockerfile:1
# The MLflow tracking server for charts/mlflow: the full `mlflow` package (version pinned in
# requirements/constraints.txt) with PostgreSQL (psycopg2-binary) and S3 (boto3) drivers.
# Build context: the repository root (scripts/build-images.sh passes it).
#
# BASE_IMAGE: see ../Dockerfile; machines without a registry pass the debootstrap stand-in.
ARG BASE_IMAGE=docker.io/library/python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${BASE_IMAGE} AS builder
# Package-index settings of the building machine (e.g. a CA bundle for a TLS-inspecting
# proxy), passed by scripts/build-images.sh when the machine has them; builder stage only.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# A failed install fails the build (see ../Dockerfile: never `|| true` after pip install).
COPY requirements/mlflow-server.in requirements/constraints.txt /src/requirements/
RUN /opt/venv/bin/pip install --only-binary=:all: -r /src/requirements/mlflow-server.in \
 && /opt/venv/bin/pip uninstall --yes pip wheel

FROM ${BASE_IMAGE}

RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mlflow \
 && mkdir -p /var/lib/mlflow/artifacts \
 && chown -R 10001:10001 /var/lib/mlflow

COPY --from=builder /opt/venv /opt/venv

# MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no background job runners (about 14 processes
# by default; start-up drops from ~30-40 s to ~10 s on 2 cores). /var/lib/mlflow holds the
# SQLite store and local artifacts (a volume); /tmp must be writable (tmpfs or emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_PORT=5000

WORKDIR /var/lib/mlflow
# Metadata last. Defaults for a bare build: scripts/build-images.sh passes version, revision,
# source and created with --label (buildah reuses a cached LABEL layer whatever the ARGs).
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=""
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="beyondfit-mlflow" \
      org.opencontainers.image.description="MLflow tracking server and model registry for beyondfit" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
EXPOSE 5000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request as u; r = u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MLFLOW_PORT', '5000'), timeout=2); sys.exit(0 if r.status == 200 else 1)"]
# The chart passes its own arguments (backend store, artifacts, allowed hosts); this default
# is a self-contained server on the /var/lib/mlflow volume.
ENTRYPOINT ["mlflow", "server"]
CMD ["--host", "0.0.0.0", "--port", "5000", "--workers", "1", \
     "--backend-store-uri", "sqlite:////var/lib/mlflow/mlflow.db", \
     "--artifacts-destination", "/var/lib/mlflow/artifacts", "--serve-artifacts"]
