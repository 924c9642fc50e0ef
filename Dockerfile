# syntax=docker/dockerfile:1
#
# One image for the whole platform. ENTRYPOINT is the `crm` command line, so the container's
# command picks the process (deploy/compose/docker-compose.yml and deploy/k8s/ do exactly this):
#
#   docker build -t crm-platform:0.1.0 .
#   docker run --rm crm-platform:0.1.0 serve identity --host 0.0.0.0 --port 8001   # one service
#   docker run --rm crm-platform:0.1.0 db upgrade identity                          # migrations
#   docker run --rm -p 8000:8000 crm-platform:0.1.0                                 # embedded mode (default CMD)
#
# No HEALTHCHECK here: the port depends on which service the container runs. Compose and
# Kubernetes probe GET /ready (readiness) and GET /health (liveness) per service instead.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the platform and its pinned dependencies --------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when pyproject.toml or constraints.txt change.
# Every dependency ships a manylinux wheel for CPython 3.11 (asyncpg, orjson, uvloop, httptools...),
# so no compiler is needed.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt

# Then the platform itself: a regular (non-editable) install, so the Alembic migrations
# (services/*/migrations) travel inside the installed package. README.md is the package's readme.
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir -c constraints.txt . \
 && pip check

# --- runtime: the virtualenv only, run as a non-root user ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG CRM_UID=10001
LABEL org.opencontainers.image.title="crm-platform" \
      org.opencontainers.image.description="CRM platform: identity, interactions, segmentation, loyalty and the gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

# /app is the working directory; /app/var is where embedded mode (`crm run`) keeps its SQLite
# files (CRM_VAR_DIR defaults to ./var). Distributed mode writes nothing to disk, so the
# Kubernetes manifests run with a read-only root filesystem.
RUN groupadd --system --gid "${CRM_UID}" crm \
 && useradd --system --uid "${CRM_UID}" --gid crm --home-dir /app --no-create-home --shell /usr/sbin/nologin crm \
 && mkdir -p /app/var \
 && chown -R crm:crm /app

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRM_LOG_JSON=true

WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER ${CRM_UID}:${CRM_UID}

# gateway 8000, identity 8001, interactions 8002, segmentation 8003, loyalty 8004
EXPOSE 8000 8001 8002 8003 8004

ENTRYPOINT ["crm"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
