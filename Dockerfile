# syntax=docker/dockerfile:1
# cost-guard: the daemon in a small image. Two stages on the same base: the build stage
# makes a virtualenv in /opt/venv, the final stage copies only that (no pip cache, no
# sources, no build tools) and runs as an unprivileged user.
#
#   docker build -t cost-guard .
#   docker run --rm -e COST_GUARD_CONFIG=/etc/cost-guard/cost-guard.yaml \
#       -v "$PWD/cost-guard.yaml:/etc/cost-guard/cost-guard.yaml:ro" -p 8080:8080 cost-guard
#
# BASE_IMAGE must be Debian-based with python3 (>= 3.11) and its venv module; the official
# python image is the default. `make image-test` builds the same file on a bookworm base
# bootstrapped locally (python3 in /usr/bin), which is why nothing below names a Python path
# outside the venv.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# demo: the simulator (moto[server] and what it pulls in), so
# `cost-guard demo` and `python -m guard.sim` work in the image; --build-arg EXTRAS= drops it.
ARG EXTRAS=demo
# pip reads the system CA bundle, so a build behind a TLS-inspecting proxy works when the
# proxy's CA is in the base image (pip's own certifi bundle would not know it).
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer stays cached while only the
# code changes.
COPY pyproject.toml ./
RUN /opt/venv/bin/python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = [e for e in os.environ.get('EXTRAS', '').split(',') if e]; print('\n'.join(p['dependencies'] + [r for e in extras for r in p['optional-dependencies'][e]]))" > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-compile -r requirements.txt
COPY README.md ./
COPY guard ./guard
COPY migrations ./migrations
# The package carries its Alembic scripts as guard/migrations (see pyproject.toml). Bytecode
# is left out for a smaller image: the daemon compiles what it imports in memory, at start.
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile --no-deps . \
    && /opt/venv/bin/pip check \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && /opt/venv/bin/cost-guard --version

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="sagemaker-cost-guard" \
      org.opencontainers.image.description="Stops Amazon SageMaker from quietly burning money" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid so volume ownership and Kubernetes' runAsUser can be set ahead of time.
RUN groupadd --gid 10001 cost-guard \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/cost-guard \
       --shell /usr/sbin/nologin cost-guard \
    && mkdir -p /var/lib/cost-guard /etc/cost-guard \
    && chown 10001:10001 /var/lib/cost-guard
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COST_GUARD_LOG_FORMAT=json
# The default SQLite URL (sqlite:///cost-guard.db) is relative: it lands in the data dir.
# Mount a volume here to keep it, or set COST_GUARD_DATABASE_URL to Postgres.
WORKDIR /var/lib/cost-guard
USER 10001:10001
EXPOSE 8080
# /healthz of `run --serve` (fails when the last good cycle is too old); no curl in here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COST_GUARD_SERVE__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["cost-guard"]
CMD ["run", "--serve"]
