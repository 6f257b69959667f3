# The sftrenew image: the CLI, the worker, Flower and (for the lab profile) the simulated fleet.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 sftrenew
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sftrenew ./sftrenew
COPY pipeline ./pipeline
COPY workers ./workers
COPY tasks ./tasks
COPY sftlab ./sftlab
RUN pip install --no-cache-dir .
USER sftrenew
WORKDIR /home/sftrenew
ENTRYPOINT ["sftrenew"]
CMD ["--help"]
