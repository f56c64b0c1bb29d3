#!/bin/sh
# Stands in for the plugin binary in `make valgrind`: runs the real binary
# under memcheck, with valgrind's report in a file so stderr stays hclog JSON.
# Any error or definite leak makes the process exit 99, which the tests see.
dir="${VALGRIND_LOG_DIR:-/tmp/gpx-valgrind}"
mkdir -p "$dir"
exec valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite --log-file="$dir/vg.%p.log" "$GPX_VALGRIND_TARGET" "$@"
