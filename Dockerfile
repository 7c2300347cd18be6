# ServicePulse: one image for the API, the processors and the simulator (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SERVICEPULSE_STACK_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
# the runtime packages only: bench/ (benchmarks) and tests/ are not part of the image
COPY contract ./contract
COPY kafkaport ./kafkaport
COPY producers ./producers
COPY processors ./processors
COPY api ./api
COPY dashboards ./dashboards
COPY servicepulse ./servicepulse
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data servicepulse \
 && mkdir -p /data \
 && chown servicepulse /data

USER servicepulse
WORKDIR /data
EXPOSE 8000 9400
CMD ["servicepulse", "--help"]
