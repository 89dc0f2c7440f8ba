# Sourced by scripts/test after _venv.sh: makes sure Debian's prometheus program is installed,
# so the dashboard's Kubernetes series are tested against a real Prometheus
# (tests/server/dashboard/test_prometheus.py starts one on 127.0.0.1 with a throw-away store).
# As root, installs Debian's prometheus package when it is missing; otherwise says those tests
# will be skipped. Under CI (CI=true) a missing prometheus fails them.

if ! command -v prometheus >/dev/null; then
  if apt_install "the dashboard's Prometheus tests; under a minute" prometheus; then
    if ! command -v prometheus >/dev/null; then
      echo "installed Debian's prometheus package, but found no prometheus on PATH" >&2
      exit 1
    fi
  else
    echo "note: Debian's prometheus is not installed, so the dashboard's Prometheus tests" \
      "$(missing_fate "${CI:-}" CI=true). Install it (sudo apt-get install" \
      "prometheus)." >&2
  fi
fi
