# syntax=docker/dockerfile:1
# collect-jobs: multi-stage build. The builder resolves and builds wheels; the
# final image has no compiler, runs as a fixed non-root UID, and execs Python
# directly so SIGTERM reaches the service (which checkpoints and hands its jobs
# to another replica within SHUTDOWN_GRACE_SECONDS).

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt setup.cfg pyproject.toml README.md ./
COPY service ./service
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim-bookworm
ARG UID=10001
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8080
RUN groupadd --system --gid "${UID}" app \
    && useradd --system --uid "${UID}" --gid app --no-create-home --shell /usr/sbin/nologin app
# The wheels are mounted for this one step, not copied: a copied layer would
# stay in the image even after the files were deleted.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "collect-jobs==0.1.0"
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "service"]
