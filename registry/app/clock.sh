#!/bin/sh
# A supervised service: prints the time every second. It says it is ready through sd_notify
# (`roost notify`, found through $ROOST_BIN, which the host sets for its services).
"$ROOST_BIN" notify --ready --status "ticking every second"
while :; do
  echo "tick $(date -u +%H:%M:%S)"
  sleep 1
done
