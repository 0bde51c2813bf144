# Lepton's image: workers, Flower and producers all run from it (see docker-compose.yml).
FROM python:3.11-slim

# One BLAS thread per process: a worker's pool processes are its parallelism, and
# `lepton worker` imports numpy before it could set this itself.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEPTON_DATA_ROOT=/data \
    LEPTON_RESULTS_DIR=/data/lepton-results \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

# A fixed non-root uid, so a bind-mounted data directory can be given to it (chown 10001).
RUN groupadd --system --gid 10001 lepton \
    && useradd --system --uid 10001 --gid lepton --create-home --home-dir /home/lepton lepton \
    && mkdir -p /data /flower \
    && chown lepton:lepton /data /flower

WORKDIR /app

# Dependencies only, read from pyproject.toml: this layer is rebuilt when they change,
# not when the code does.
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(project['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY producer ./producer
COPY workers ./workers
COPY tasks ./tasks
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info
COPY docker/entrypoint.sh /usr/local/bin/lepton-entrypoint
RUN chmod 0755 /usr/local/bin/lepton-entrypoint

USER lepton
VOLUME ["/data"]
ENTRYPOINT ["lepton-entrypoint"]
CMD ["--help"]
