#!/usr/bin/env bash
# Render a labelcon report page in headless Chromium, save a screenshot, and fail when the
# page logs anything to its console or renders fewer than MIN_FIGURES figures (default 4; a run
# trained without labels has 2).
#
#   bench/render_report.sh RUN/report.html [SCREENSHOT.png] [WIDTH,HEIGHT]
#
# The page holds no script, so any console message (an uncaught exception, a blocked load)
# is an error. CHROMIUM overrides the browser (default /usr/bin/chromium).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 REPORT.html [SCREENSHOT.png] [WIDTH,HEIGHT]" >&2; exit 2; }
page=$(realpath "$1")
shot=$(realpath -m "${2:-report.png}")
size=${3:-1280,1600}
chromium=${CHROMIUM:-/usr/bin/chromium}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$work/profile" \
  --enable-logging=stderr --v=0 --window-size="$size" --screenshot="$shot" --dump-dom "file://$page" \
  >"$work/dom.html" 2>"$work/log"
if grep -E ':CONSOLE|Uncaught' "$work/log" >&2; then
  echo "FAIL: $page logs to the console (above)" >&2
  exit 1
fi
figures=$(grep -o '<figure' "$work/dom.html" | wc -l)
if [ "$figures" -lt "${MIN_FIGURES:-4}" ]; then
  echo "FAIL: $page renders $figures figures, expected at least ${MIN_FIGURES:-4}" >&2
  exit 1
fi
[ -s "$shot" ] || { echo "FAIL: no screenshot written to $shot" >&2; exit 1; }
echo "ok: $page renders $figures figures with no console messages; screenshot $shot"
