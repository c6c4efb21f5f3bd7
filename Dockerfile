# One image for every service: `python -m services.<name>` picks the service.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY irctl ./irctl
COPY demo ./demo
RUN pip install . && useradd --system --uid 10001 ir && mkdir -p /data && chown ir /data
USER ir
ENV IR_STATE_DIR=/data IR_CONFIG_DIR=/app/demo/config IR_HTTP_HOST=0.0.0.0 IR_HTTP_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "services.gateway"]
