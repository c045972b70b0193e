#!/bin/sh
# shell_worker.sh: the smallest mpsupervisor worker, in POSIX sh.
#
# With a control channel (MPSUP_CONTROL_FD set) it says READY, then reads lines
# and exits 0 on "STOP DRAIN", "STOP NOW" or end of file (the supervisor is gone).
# Other lines (BOOTSTRAP, START, ...) are ignored. Without a channel it waits for
# the group's stop_signal (SIGTERM by default) and dies of it.
#
# The library hands the channel over as descriptor 3; that matters because dash,
# a common /bin/sh, accepts only descriptors 0-9 in >&"$MPSUP_CONTROL_FD".

id=${MPSUP_WORKER_ID:-standalone}
say() { echo "[shell worker $id pid $$] $*" >&2; }

say started

if [ -z "${MPSUP_CONTROL_FD:-}" ]; then
    say "no control channel: waiting for the stop signal"
    # The stop signal goes to the whole process group, sleep included.
    while :; do sleep 3600; done
fi

echo READY >&"$MPSUP_CONTROL_FD"

while IFS= read -r line <&"$MPSUP_CONTROL_FD"; do
    case $line in
        "STOP "*) say "stopping (${line#STOP })"; exit 0 ;;
    esac
done
say "control channel closed: stopping"
exit 0
