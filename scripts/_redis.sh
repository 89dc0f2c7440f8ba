# Sourced by scripts/test after _venv.sh: makes sure Debian's redis-server is installed, so the
# answer cache's Redis tests run against a real server (tests/support/redis.py starts one per
# test session on a free loopback port). As root, installs Debian's redis-server package when it
# is missing; otherwise says the Redis tests will be skipped. Under CI (CI=true) a missing
# server fails those tests.

_scalegroup_has_redis() {
  command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]
}

if ! _scalegroup_has_redis; then
  if apt_install "the answer cache's Redis tests; under a minute" redis-server; then
    if ! _scalegroup_has_redis; then
      echo "installed Debian's redis-server package, but found no redis-server on PATH or" \
        "in /usr/bin" >&2
      exit 1
    fi
  else
    echo "note: redis-server is not installed, so the answer cache's Redis tests" \
      "$(missing_fate "${CI:-}" CI=true). Install it (sudo apt-get install redis-server)." >&2
  fi
fi
