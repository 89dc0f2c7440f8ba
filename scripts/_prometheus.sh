# Sourced by scripts/test after _venv.sh: makes sure Debian's prometheus program is installed,
# so the dashboard's Kubernetes series are tested against a real Prometheus
# (tests/server/dashboard/test_prometheus.py starts one on 127.0.0.1 with a throw-away store).
# As root, installs Debian's prometheus package when it is missing; otherwise says those tests
# will be skipped. Under CI (CI=true) a missing prometheus fails them.

if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> as root: apt-get update && apt-get install prometheus (Debian's package, for the" \
      "dashboard's Prometheus tests; under a minute; the log in .venv/prometheus-install.log)"
    _scalegroup_prom_log="$ROOT/.venv/prometheus-install.log"
    run_quietly "installing prometheus" "$_scalegroup_prom_log" sh -c 'apt-get update &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus' ||
      exit 1
    if ! command -v prometheus >/dev/null; then
      echo "installed Debian's prometheus package, but found no prometheus on PATH; the log" \
           "is in $_scalegroup_prom_log" >&2
      exit 1
    fi
  else
    if [ "${CI:-}" = "true" ]; then
      _scalegroup_prom_fate="will fail (CI=true)"
    else
      _scalegroup_prom_fate="will be skipped here"
    fi
    echo "note: Debian's prometheus is not installed, so the dashboard's Prometheus tests" \
         "$_scalegroup_prom_fate. Install it (sudo apt-get install prometheus)." >&2
  fi
fi
