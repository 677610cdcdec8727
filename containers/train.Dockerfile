# The trainer: a Vertex AI custom job container running `python -m salesmesh.train`; the job's
# args (--data URI --horizon N) follow the entrypoint and AIP_MODEL_DIR, set by Vertex AI, is
# the default output. Build from the repository root:
#   docker build -f containers/train.Dockerfile -t IMAGE .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM's wheel links the system OpenMP runtime, which slim images lack. Left unpinned on
# purpose: the Debian archive keeps only the current bookworm build, so a pin would break the
# build at its next security update.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# --no-deps: the file pins every transitive dependency, so nothing unpinned can slip in, and
# pip check proves the set complete. Installed before the code so code changes reuse the layer.
COPY containers/requirements-train.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --no-deps -r /tmp/requirements.txt \
    && pip check \
    && rm /tmp/requirements.txt

COPY pyproject.toml README.md /tmp/src/
COPY shared /tmp/src/shared
RUN pip install --no-cache-dir --no-deps /tmp/src && rm -rf /tmp/src

RUN useradd --system --create-home --uid 10001 --user-group salesmesh
# numeric, so a platform enforcing "run as non-root" can check it without /etc/passwd
USER 10001:10001
WORKDIR /home/salesmesh

ENTRYPOINT ["python", "-m", "salesmesh.train"]
CMD ["--help"]
