# syntax=docker/dockerfile:1
# One image for every process of the0-k8s; the command picks the role:
#   celery -A worker worker -Q reconcile,bots,logs     (the worker; default)
#   celery -A worker.broker_app beat                    (the schedule)
#   python -m worker events                             (NATS events consumer)
#   uvicorn --factory api.main:create_app --host 0.0.0.0 --port 8000
#   celery -A worker.flower_app flower --port=5555
#   python3 -m botpod init|sync                         (inside bot pods: INIT_IMAGE)
# Slim Debian base pinned to a patch release (override with --build-arg PYTHON_IMAGE=...@sha256:…
# to pin a digest), non-root (uid 10001), no compilers or build tools in the final stage, runs
# with a read-only root filesystem (only /tmp must be writable). No secret is baked in: every
# setting comes from the environment at run time.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/the0
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY worker ./worker
COPY beat ./beat
COPY api ./api
COPY botpod ./botpod
# Every dependency pinned and hash-checked (requirements.lock, made by tools/lock/update.sh);
# then a regular (non-editable) install of this project with the locked build backend: the
# packages land in the venv's site-packages, compiled to bytecode here because the runtime
# filesystem is read-only.
RUN /opt/the0/bin/pip install --require-hashes -r requirements.lock \
 && /opt/the0/bin/pip install --no-deps --no-build-isolation .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="the0-k8s" \
      org.opencontainers.image.description="Kubernetes mode of the0: bots from MongoDB as Pods and CronJobs, driven by Celery" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 the0 \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
            --shell /usr/sbin/nologin the0
COPY --from=build /opt/the0 /opt/the0
ENV PATH=/opt/the0/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000 5555
CMD ["celery", "-A", "worker", "worker", "-Q", "reconcile,bots,logs", "--loglevel=INFO"]
