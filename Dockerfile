# syntax=docker/dockerfile:1
# One image for every process of the0-k8s; the command picks the role:
#   celery -A worker worker -Q reconcile,bots,logs     (the worker; default)
#   celery -A worker.broker_app beat                    (the schedule)
#   python -m worker events                             (NATS events consumer)
#   uvicorn --factory api.main:create_app --host 0.0.0.0 --port 8000
#   celery -A worker.flower_app flower --port=5555
#   python3 -m botpod init|sync                         (inside bot pods: INIT_IMAGE)
# Base: Debian 12 slim and Debian's own Python 3.11 (python3, python3-venv from apt), so the
# base exists both on any registry and on a machine without one, where tools/image builds it
# from Debian packages (debootstrap) under the same name. Pin a digest in production with
# --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:…. Non-root (uid 10001), no compilers or
# build tools in the final stage, runs with a read-only root filesystem (only /tmp must be
# writable). No secret is baked in: every setting comes from the environment at run time.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# A CA bundle for pip, for networks that reach PyPI through a TLS-inspecting proxy (tools/image
# mounts the host's for the build only); empty: the image's own CAs. Not in the final stage.
ARG PIP_CERT=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/the0
WORKDIR /src
# Every dependency pinned and hash-checked (requirements.lock, made by tools/lock/update.sh),
# in a layer of its own so a code change rebuilds only the last step; then a regular
# (non-editable) install of this project with the locked build backend: the packages land in
# the venv's site-packages, compiled to bytecode here because the runtime filesystem is
# read-only.
COPY requirements.lock ./
RUN /opt/the0/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY beat ./beat
COPY api ./api
COPY botpod ./botpod
RUN /opt/the0/bin/pip install --no-deps --no-build-isolation .

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="the0-k8s" \
      org.opencontainers.image.description="Kubernetes mode of the0: bots from MongoDB as Pods and CronJobs, driven by Celery" \
      org.opencontainers.image.licenses="Apache-2.0"
# The venv's python is a link to /usr/bin/python3: the same Debian python3 as the build stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 the0 \
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
