#!/bin/sh
# After `make valgrind`: every memcheck log must be empty (--quiet prints only errors).
dir="${VALGRIND_LOG_DIR:-/tmp/gpx-valgrind}"
n=$(ls "$dir"/vg.*.log 2>/dev/null | wc -l)
bad=0
for f in "$dir"/vg.*.log; do
  [ -s "$f" ] && { echo "valgrind report: $f"; cat "$f"; bad=1; }
done
echo "valgrind: $n plugin processes checked, $( [ $bad = 0 ] && echo 'no errors, no definite leaks' || echo 'ERRORS')"
rm -rf "$dir"
exit $bad
