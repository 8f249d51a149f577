# syntax=docker/dockerfile:1
# esg-leads: the streaming flow as a Kafka service (`esg-leads run`).
#
#   docker build -t esg-leads .
#   docker run --rm -v esg-data:/data -p 9464:9464 esg-leads          # deploy/esg-leads.toml
#   docker run --rm esg-leads run --config /app/deploy/esg-leads.toml --bootstrap host:9092
#
# Layers, most stable first: the third-party dependencies (read from pyproject.toml
# alone, so they stay cached while the code changes), then this package as a wheel
# built in a separate stage (setuptools needs the package folders present to build).
# No test extra is installed.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---------------------------------------------------------------- build: the wheel
FROM base AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY operators/ operators/
COPY online_models/ online_models/
COPY connectors/ connectors/
COPY flows/ flows/
COPY replay/ replay/
COPY esg_leads/ esg_leads/
RUN pip wheel --no-deps --wheel-dir /wheels .

# ------------------------------------------------------------------- the runtime
FROM base
RUN useradd --create-home --uid 10001 --user-group esg \
 && mkdir -p /data/recovery /data/audit \
 && chown -R esg:esg /data
WORKDIR /app

# Dependencies only (project.dependencies; no extras), at the versions CI tested
# (requirements.lock): cached until pyproject.toml or the lock changes.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -c requirements.lock -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The package itself, then a check that every dependency is satisfied.
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    pip install --no-deps /tmp/wheels/*.whl \
 && pip check

COPY deploy/esg-leads.toml /app/deploy/esg-leads.toml

USER esg
# Recovery snapshots (/data/recovery) and the audit trail (/data/audit).
VOLUME ["/data"]
# Prometheus metrics (metrics.port in deploy/esg-leads.toml).
EXPOSE 9464

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=4)"]

ENTRYPOINT ["esg-leads"]
CMD ["run", "--config", "/app/deploy/esg-leads.toml"]
