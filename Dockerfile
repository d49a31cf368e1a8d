# The survey → Bitrix24 sync job with its built-in scheduler (python cli.py schedule).
#   docker build -t survey-bitrix24-sync .
#   docker run --env-file .env -v sync-data:/app/data survey-bitrix24-sync
# With the university portal's pushes (SURVEY_SOURCE=intake), one container receives and syncs:
#   docker run --env-file .env -p 8000:8000 -e INTAKE_HOST=0.0.0.0 -v sync-data:/app/data \
#     survey-bitrix24-sync python cli.py schedule --with-intake
# One-off commands use the same image:  docker run --rm --env-file .env survey-bitrix24-sync python cli.py doctor
# `docker stop` sends SIGTERM: the run in flight finishes first, so give it time (docker stop -t 600,
# or stop_grace_period in compose); a second signal (or SIGKILL) ends it at once, and the next run
# completes what it started.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEALTH_FILE=/app/data/heartbeat.json

WORKDIR /app

RUN groupadd --system --gid 10001 sync \
    && useradd --system --uid 10001 --gid sync --home-dir /app --no-create-home --shell /usr/sbin/nologin sync

# Runtime dependencies only (pinned); the sandbox that `cli.py demo` starts needs nothing more.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code stays root-owned (read-only for the job); only data/ and reports/ are writable.
COPY cli.py field_mapping.json ./
COPY core/ ./core/
COPY sync/ ./sync/
COPY storage/ ./storage/
COPY jobs/ ./jobs/
COPY intake/ ./intake/
COPY examples/ ./examples/
COPY sandbox/ ./sandbox/
RUN python -m compileall -q /app \
    && mkdir -p /app/data /app/reports \
    && chown sync:sync /app/data /app/reports

# The SQLite store (DATABASE_URL's default, sqlite:///./data/sync.sqlite3) and the heartbeat; reports.
VOLUME ["/app/data", "/app/reports"]

USER 10001:10001

# The intake (cli.py intake, or schedule --with-intake) listens here when the source is the portal's pushes.
EXPOSE 8000

STOPSIGNAL SIGTERM
HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "jobs.health"]

CMD ["python", "cli.py", "schedule"]
