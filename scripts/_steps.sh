# Sourced by the README's commands: named, timed steps, and long commands that say they are
# still running instead of staying silent for minutes.
#
#   step_begin "ruff check"; ruff check .; step_end     # "==> ruff check" ... "    took 2.1 s"
#   run_quietly "installing X" LOG cmd...               # output to LOG, a line every 15 s,
#                                                       # the log's tail when it fails
#   steps_summary                                       # the time of every step, one per line

if [ -z "${_steps_loaded:-}" ]; then
  _steps_loaded=1
  _steps_names=()
  _steps_seconds=()
  _step_name=
  _step_started=
fi

_steps_now() {
  date +%s.%N
}

_steps_since() {
  awk -v start="$1" -v now="$(_steps_now)" 'BEGIN { printf "%.1f", now - start }'
}

step_begin() {
  _step_name=$1
  _step_started=$(_steps_now)
  echo "==> $1"
}

step_end() {
  [ -n "$_step_name" ] || return 0
  local took
  took=$(_steps_since "$_step_started")
  _steps_names+=("$_step_name")
  _steps_seconds+=("$took")
  echo "    $_step_name: ${took} s"
  _step_name=
}

# Prints each finished step with its time; the step still open (one that failed) last.
steps_summary() {
  local i
  [ ${#_steps_names[@]} -gt 0 ] || [ -n "$_step_name" ] || return 0
  echo "==> time by step"
  for i in "${!_steps_names[@]}"; do
    printf '    %8s s  %s\n' "${_steps_seconds[$i]}" "${_steps_names[$i]}"
  done
  if [ -n "$_step_name" ]; then
    printf '    %8s s  %s (did not finish)\n' "$(_steps_since "$_step_started")" "$_step_name"
  fi
}

# run_quietly WHAT LOG COMMAND...: runs COMMAND with its output in LOG. While it runs, prints a
# line every 15 s with the time so far and the log's last line; on failure, the log's tail.
run_quietly() {
  local what=$1 log=$2 started ticker status=0
  shift 2
  started=$SECONDS
  mkdir -p "$(dirname "$log")"
  : >"$log"
  (
    while sleep 15; do
      printf '    ... %s: %d s, last: %s\n' "$what" "$((SECONDS - started))" \
        "$(tail -n 1 "$log" 2>/dev/null | cut -c1-90)"
    done
  ) &
  ticker=$!
  "$@" >"$log" 2>&1 || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "$what failed (exit $status); the whole log is in $log" >&2
    return "$status"
  fi
  echo "    $what: done in $((SECONDS - started)) s"
}

# apt_install WHY PACKAGE...: where it may (root, apt-get present), installs Debian's PACKAGEs,
# saying so first ("==> as root: ...", WHY says what for and how long) with apt's output in
# .venv/apt-PACKAGE.log; `apt-get update` runs once per script. Returns 1 where it may not,
# for the caller to say what goes without; ends the script when the install fails.
apt_install() {
  local why=$1 update='apt-get update && ' log
  shift
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    return 1
  fi
  if [ -n "${_scalegroup_apt_updated:-}" ]; then
    update=''
  fi
  log="$ROOT/.venv/apt-$1.log"
  echo "==> as root: ${update}apt-get install $* (Debian's packages, for $why; the log in" \
    "${log#"$ROOT/"})"
  run_quietly "installing $*" "$log" sh -c "${update}DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends $*" || exit 1
  _scalegroup_apt_updated=1
}

# missing_fate VALUE SETTING: what becomes of the tests that need a missing program: "will fail
# (SETTING)" when VALUE (SETTING's value) is 1 or true, else "will be skipped here".
missing_fate() {
  case "$1" in
    1 | true) echo "will fail ($2)" ;;
    *) echo "will be skipped here" ;;
  esac
}
