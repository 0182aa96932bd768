#!/bin/sh
# Chromium in kiosk mode on the Pi's screen, showing the local kiosk server (start it from the desktop
# session's autostart, see sample_apps/README.md). Waits until the server answers.
URL=${EDGE_REC_KIOSK_URL:-http://127.0.0.1:8080/}
until wget -q -O /dev/null "${URL}api/status"; do sleep 1; done
exec chromium --kiosk --noerrdialogs --disable-infobars --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --check-for-update-interval=31536000 --incognito "$URL"
