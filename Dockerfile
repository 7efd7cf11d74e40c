# geocache's container image: `geocache serve`, configured by GEOCACHE_* variables.
#
#   podman build -t geocache .            (or docker build)
#   podman run -p 7379:7379 -p 7380:7380 -e GEOCACHE_CLUSTER_SECRET=... geocache
#
# Across networks, TLS on every link (README, Deploy and Security), as deploy/compose.yaml
# sets it: GEOCACHE_PORT=0, GEOCACHE_TLS_PORT=7381, GEOCACHE_TLS_CERT_FILE,
# GEOCACHE_TLS_KEY_FILE and GEOCACHE_TLS_CA_CERT_FILE (files mounted read-only),
# GEOCACHE_TLS_CLUSTER=yes.
#
# BASE is the Python runtime the image runs on; the default is the official slim image.
# BUILD_BASE builds the wheel: the full image of the same Python and Debian release,
# which has a C compiler, so mypyc compiles the hot path (setup.py); a build base
# without one makes a pure-Python wheel, with a warning in the build log (and
# `INFO server` says compiled:no). A machine without a registry passes its own bases
# (tests/deploy builds one with debootstrap) and puts geocache's dependencies and build
# requirements as wheels in deploy/wheelhouse/ with --build-arg PIP_NO_INDEX=1: the
# build then needs no network.
ARG BASE=docker.io/library/python:3.12-slim-bookworm
ARG BUILD_BASE=docker.io/library/python:3.12-bookworm

FROM ${BUILD_BASE} AS build
ARG PIP_NO_INDEX=
ENV PIP_NO_INDEX=${PIP_NO_INDEX} \
    PIP_FIND_LINKS=/src/deploy/wheelhouse \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE MANIFEST.in ./
COPY src ./src
COPY deploy/wheelhouse ./deploy/wheelhouse
# The wheel (geocache's hot path compiled where BUILD_BASE has a C compiler; hiredis,
# xxhash, uvloop and aiohttp compiled where a wheel exists), then a virtual environment
# with it and the server extra: the runtime stage copies it.
RUN python3 -m venv /opt/geocache \
    && /opt/geocache/bin/pip wheel --wheel-dir /wheels '.[server]' \
    && /opt/geocache/bin/pip install --no-index --find-links /wheels 'geocache[server]'

FROM ${BASE}
# A fixed non-root id, so Kubernetes' runAsNonRoot and file ownership can name it.
RUN groupadd --system --gid 10001 geocache \
    && useradd --system --uid 10001 --gid geocache --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin geocache
COPY --from=build /opt/geocache /opt/geocache
COPY deploy/healthcheck.py /opt/geocache/healthcheck.py
# Listen on every interface of the container; peers reach it at GEOCACHE_ADVERTISE_ADDR
# (or, without it, at the address toward the first seed: see the README's Deploy).
ENV PATH=/opt/geocache/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GEOCACHE_BIND=0.0.0.0 \
    GEOCACHE_PORT=7379 \
    GEOCACHE_HTTP_PORT=7380
# RESP, HTTP (API, /healthz, /readyz, /metrics; HTTPS once TLS is set), and RESP over
# TLS (GEOCACHE_TLS_PORT=7381; README, Security).
EXPOSE 7379 7380 7381
USER 10001:10001
# /healthz answers while the event loop runs. healthcheck.py asks it over HTTPS, with the
# node's own certificate, when the node has TLS (GEOCACHE_TLS_*); stdlib only, as a slim
# image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "/opt/geocache/healthcheck.py", "/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["geocache", "serve"]
