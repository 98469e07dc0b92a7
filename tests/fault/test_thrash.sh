#!/usr/bin/env bash
# A short seeded thrash run (the long one is tests/fault/thrash --duration 30m).
exec bash "$KEEL_SRC/tests/fault/thrash" --duration "${KEEL_THRASH:-45s}"
