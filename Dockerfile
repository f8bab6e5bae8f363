# syntax=docker/dockerfile:1
# The beyondfit model service: gunicorn + uvicorn workers serving app.main:create_app().
#
# Build:  bash scripts/build-images.sh   (make image; podman or docker)
# Run:    podman run --read-only --tmpfs /tmp:rw,U --tmpfs /run/beyondfit/metrics:rw,U \
#           -e MLFLOW_TRACKING_URI=http://mlflow:5000 -p 8000:8000 localhost/beyondfit:<version>
#
# BASE_IMAGE: the official Python image, pinned by tag and by its multi-arch index digest
# (python:3.11.10-slim-bookworm). Machines without a registry pass a stand-in built from
# Debian bookworm with debootstrap (scripts/base-image.sh: localhost/debian-python:bookworm);
# its python3 is /usr/bin/python3 where the official image has /usr/local/bin/python3, so
# everything below goes through `python3 -m venv` and /opt/venv/bin.
ARG BASE_IMAGE=docker.io/library/python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# ---- builder: a virtual environment with the pinned runtime dependencies ----------------
FROM ${BASE_IMAGE} AS builder
# Package-index settings of the building machine (e.g. a CA bundle for a TLS-inspecting
# proxy), passed by scripts/build-images.sh when the machine has them; builder stage only.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# Dependencies first (their own layer, cached while only the code changes); every version
# comes from requirements/constraints.txt, the one place for Python pins. Wheels only: the
# final stage has no compiler, and neither does this one. A failed install fails the build
# (no `|| true`: that would apply to the whole `&&` chain and ship an empty venv); the
# uninstall cannot fail on a package that is absent (pip only warns), so it is not excused.
COPY requirements/app.in requirements/constraints.txt /src/requirements/
RUN /opt/venv/bin/pip install --only-binary=:all: -r /src/requirements/app.in \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel
COPY app/ /opt/beyondfit/app/
# Byte-compile now: the root filesystem is read-only at run time.
RUN /opt/venv/bin/python -m compileall -q /opt/beyondfit/app

# ---- final: the venv and the code, nothing else -----------------------------------------
FROM ${BASE_IMAGE}

# A fixed numeric user (matches the chart's runAsUser/runAsGroup/fsGroup 10001). A passwd
# entry exists so getpass.getuser() (MLflow) works; its home is never written.
RUN groupadd --system --gid 10001 beyondfit \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin beyondfit \
 && mkdir -p /run/beyondfit/metrics \
 && chown -R 10001:10001 /run/beyondfit

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/beyondfit /opt/beyondfit

# /tmp (MLflow downloads the model there) and PROMETHEUS_MULTIPROC_DIR must be writable:
# tmpfs with `--read-only`, emptyDir volumes in Kubernetes.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/opt/beyondfit \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    BEYONDFIT_PORT=8000 \
    BEYONDFIT_WORKERS=2 \
    BEYONDFIT_GRACEFUL_TIMEOUT=20 \
    PROMETHEUS_MULTIPROC_DIR=/run/beyondfit/metrics

WORKDIR /opt/beyondfit
# Metadata last. Defaults for a bare build: scripts/build-images.sh passes version, revision,
# source and created with --label (buildah reuses a cached LABEL layer whatever the ARGs).
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=""
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="beyondfit" \
      org.opencontainers.image.description="beyondfit model service: a scikit-learn model from the MLflow registry behind FastAPI/gunicorn" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
EXPOSE 8000
# gunicorn's master handles SIGTERM: stop accepting, let in-flight requests finish within
# graceful_timeout (BEYONDFIT_GRACEFUL_TIMEOUT), then exit 0.
STOPSIGNAL SIGTERM
# Liveness of the process (/health never touches the registry); no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request as u; r = u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('BEYONDFIT_PORT', '8000'), timeout=2); sys.exit(0 if r.status == 200 else 1)"]
CMD ["gunicorn", "-c", "python:app.gunicorn_conf", "app.main:create_app()"]
