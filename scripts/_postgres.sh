# Sourced by scripts/test after _venv.sh: makes sure PostgreSQL's server programs are installed,
# so the catalog tests run against a real server (tests/support/postgres.py starts it).
# As root, installs Debian's postgresql package when they are missing; otherwise says the
# PostgreSQL tests will be skipped. Under CI (CI=true) a missing server fails those tests.

_scalegroup_has_postgres() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    return 0
  fi
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/postgres" ]; then
      return 0
    fi
  done
  return 1
}

if [ "${CI:-}" = "true" ]; then
  export SCALEGROUP_REQUIRE_POSTGRES=1
fi

if [ -z "${SCALEGROUP_TEST_POSTGRES_URL:-}" ] && ! _scalegroup_has_postgres; then
  if apt_install "the catalog's PostgreSQL tests; about a minute" postgresql; then
    if ! _scalegroup_has_postgres; then
      echo "installed Debian's postgresql package, but still found no initdb and pg_ctl on" \
        "PATH or under /usr/lib/postgresql/*/bin" >&2
      exit 1
    fi
  else
    echo "note: PostgreSQL's server programs (initdb, pg_ctl) are not installed, so the" \
      "catalog's PostgreSQL tests $(missing_fate "${SCALEGROUP_REQUIRE_POSTGRES:-}" \
        SCALEGROUP_REQUIRE_POSTGRES=1). Install them (sudo apt-get" \
      "install postgresql), or set SCALEGROUP_TEST_POSTGRES_URL to a server's URL." >&2
  fi
fi
