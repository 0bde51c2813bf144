#!/bin/sh
# The image's entry point: `docker run lepton regress ...` runs `lepton regress ...`;
# commands of their own (lepton, celery, python, sh) run as given, so that
# `docker compose run --rm producer lepton regress ...` works too.
set -e
case "${1:-}" in
    lepton|celery|python|python3|sh)
        exec "$@"
        ;;
    *)
        exec lepton "$@"
        ;;
esac
