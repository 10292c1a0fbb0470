#!/bin/sh
# Run first inside the sandbox's namespaces (as `sh -c <this file's text> sh ARGS...`): join the cgroups, make
# every mount read-only except the working directory, then exec the rest of the command line.
# Arguments: WORKDIR READONLY(0/1) CGROUP... -- CMD...
# Exit codes: 96 cannot enter WORKDIR, 97 cannot join a cgroup, 98/99 cannot bind or remount read-only.
wd=$1; readonly=$2; shift 2
while [ "$1" != "--" ]; do echo $$ > "$1/cgroup.procs" || exit 97; shift; done
shift
if [ "$readonly" = 1 ]; then
  mount --bind "$wd" "$wd" || exit 98
  for m in $(awk '{print $5}' /proc/self/mountinfo); do
    [ "$m" = "$wd" ] || mount -o remount,bind,ro "$m" 2>/dev/null || exit 99
  done
fi
cd "$wd" || exit 96
exec "$@"
