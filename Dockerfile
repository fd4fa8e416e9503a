# syntax=docker/dockerfile:1
# collect-jobs: multi-stage build. The builder installs the service and its
# pinned dependencies into a virtualenv; the final image copies that one
# directory, has no compiler, runs as a fixed non-root UID, and execs Python
# directly so SIGTERM reaches the service (which checkpoints and hands its jobs
# to another replica within SHUTDOWN_GRACE_SECONDS).

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# strip, for the wheels' compiled extensions below; the builder stage only.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY constraints.txt setup.cfg pyproject.toml README.md ./
COPY service ./service
# The base's pip installs into a venv without pip of its own (--python), so
# the final image carries neither pip's copy nor the wheels. The wheels'
# extensions ship with their symbol tables (cryptography's alone is 14 MB);
# stripping what dynamic linking does not need takes about 15 MB off the image
# and changes nothing at run time.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install -c constraints.txt --find-links=/wheels "collect-jobs==0.1.0" \
    && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} +

FROM python:3.11-slim-bookworm
ARG UID=10001
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8080
RUN groupadd --system --gid "${UID}" app \
    && useradd --system --uid "${UID}" --gid app --no-create-home --shell /usr/sbin/nologin app
# Copied, not installed here: a COPY's cache key is the files' content, so a
# changed service is never served from a stale layer.
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "service"]
