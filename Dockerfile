# The sftrenew image: the CLI, the worker, Flower and (for the lab profile) the simulated fleet.
# The base is pinned to a Python patch release: a new one is taken on purpose (and the tests run on it).
FROM python:3.11.15-slim
# The user the services run as. compose.yaml passes the operator's uid (SFTRENEW_UID in .env) so that the
# Docker secrets, bind-mounted with the owner and mode (0600) of their files on the host, are readable.
ARG SFTRENEW_UID=10001
RUN useradd --create-home --uid "${SFTRENEW_UID}" sftrenew
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sftrenew ./sftrenew
COPY pipeline ./pipeline
COPY workers ./workers
COPY tasks ./tasks
COPY sftlab ./sftlab
# No demo extra: the lab profile's demo uses compose's Redis, so it needs no embedded redis-server.
RUN pip install --no-cache-dir .
USER sftrenew
WORKDIR /home/sftrenew
ENTRYPOINT ["sftrenew"]
CMD ["--help"]
