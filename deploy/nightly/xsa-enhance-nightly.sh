#!/usr/bin/env bash
# Nightly incremental xsa-enhance run, for cron, a systemd timer or by hand.
#
# * Never two at once: the run (and every process it starts) holds an exclusive flock on
#   $XSA_LOCK_FILE; a second invocation while one is running writes one line to the log and
#   exits 0 without running anything.
#   Keep the lock file on a local disk, or on a shared file system mounted with flock support.
# * Logs rotate by size: before each run, a log larger than $XSA_LOG_MAX_BYTES becomes .1
#   (.1 becomes .2, ...; $XSA_LOG_KEEP files are kept). Set XSA_LOG_MAX_BYTES=0 to leave
#   rotation to logrotate (deploy/logrotate/xsa-enhance).
# * A run is stopped after $XSA_MAX_RUNTIME so it cannot run into the next night; the next run
#   resumes where it stopped (the store records what is done).
#
# Settings (environment variables, e.g. from the crontab or /etc/xsa-enhance/nightly.env):
#   XSA_STORE          the product store (required): a path or an fsspec URL
#   XSA_ENHANCE_HOME   the source checkout (default ~/xsa-enhance)
#   XSA_VENV           its Python environment (default $XSA_ENHANCE_HOME/.venv)
#   XSA_PIPELINE       default $XSA_ENHANCE_HOME/pipelines/nightly-incremental.yaml
#   XSA_RUN_ARGS       extra options for `xsa-enhance run` (e.g. --scheduler-file F)
#   XSA_LOG_DIR        default $XSA_ENHANCE_HOME/logs
#   XSA_LOCK_FILE      default $XSA_LOG_DIR/xsa-enhance-nightly.lock
#   XSA_LOG_MAX_BYTES  default 10485760 (10 MiB)    XSA_LOG_KEEP  default 14
#   XSA_MAX_RUNTIME    default 20h (a timeout(1) duration; 0 = no limit)
#   XSA_ENHANCE        the command (default $XSA_VENV/bin/xsa-enhance)
set -euo pipefail

: "${XSA_ENHANCE_HOME:=$HOME/xsa-enhance}"
: "${XSA_VENV:=$XSA_ENHANCE_HOME/.venv}"
: "${XSA_PIPELINE:=$XSA_ENHANCE_HOME/pipelines/nightly-incremental.yaml}"
: "${XSA_STORE:?set XSA_STORE to the product store (a path or an fsspec URL)}"
: "${XSA_RUN_ARGS:=}"
: "${XSA_LOG_DIR:=$XSA_ENHANCE_HOME/logs}"
: "${XSA_LOCK_FILE:=$XSA_LOG_DIR/xsa-enhance-nightly.lock}"
: "${XSA_LOG_MAX_BYTES:=10485760}"
: "${XSA_LOG_KEEP:=14}"
: "${XSA_MAX_RUNTIME:=20h}"
: "${XSA_ENHANCE:=$XSA_VENV/bin/xsa-enhance}"

mkdir -p "$XSA_LOG_DIR"
log="$XSA_LOG_DIR/xsa-enhance-nightly.log"
stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# ---- one run at a time ---------------------------------------------------------------------
exec 9>>"$XSA_LOCK_FILE"
if ! flock --nonblock 9; then
    msg="$(stamp) skipped: a previous nightly run still holds $XSA_LOCK_FILE"
    echo "$msg" >>"$log"
    echo "$msg" >&2
    exit 0
fi

# ---- size-based rotation (under the lock, so two rotations never race) -----------------------
if [[ "$XSA_LOG_MAX_BYTES" -gt 0 && -f "$log" && $(stat -c %s "$log") -ge "$XSA_LOG_MAX_BYTES" ]]; then
    rm -f "$log.$XSA_LOG_KEEP"
    for ((i = XSA_LOG_KEEP - 1; i >= 1; i--)); do
        if [[ -f "$log.$i" ]]; then mv -f "$log.$i" "$log.$((i + 1))"; fi
    done
    mv -f "$log" "$log.1"
fi

# ---- the run ---------------------------------------------------------------------------------
limit=()
if [[ "$XSA_MAX_RUNTIME" != 0 ]]; then
    limit=(timeout --signal=TERM --kill-after=300 "$XSA_MAX_RUNTIME")
fi
echo "$(stamp) start: pipeline $XSA_PIPELINE, store $XSA_STORE (pid $$)" >>"$log"
status=0
# shellcheck disable=SC2086  # XSA_RUN_ARGS is a list of options
"${limit[@]}" "$XSA_ENHANCE" -v run --pipeline "$XSA_PIPELINE" --store "$XSA_STORE" \
    $XSA_RUN_ARGS >>"$log" 2>&1 || status=$?
if [[ $status -eq 124 ]]; then
    echo "$(stamp) stopped after $XSA_MAX_RUNTIME (the next run resumes)" >>"$log"
fi
echo "$(stamp) end: exit status $status" >>"$log"
exit "$status"
