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
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> as root: apt-get update && apt-get install postgresql (Debian's package, for the" \
      "catalog's PostgreSQL tests; about a minute; the log in .venv/postgres-install.log)"
    _scalegroup_pg_log="$ROOT/.venv/postgres-install.log"
    run_quietly "installing PostgreSQL" "$_scalegroup_pg_log" sh -c 'apt-get update &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql' ||
      exit 1
    if ! _scalegroup_has_postgres; then
      echo "installed Debian's postgresql package, but still found no initdb and pg_ctl on" \
           "PATH or under /usr/lib/postgresql/*/bin; the log is in $_scalegroup_pg_log" >&2
      exit 1
    fi
  else
    if [ "${SCALEGROUP_REQUIRE_POSTGRES:-}" = 1 ]; then
      _scalegroup_pg_fate="will fail (SCALEGROUP_REQUIRE_POSTGRES=1)"
    else
      _scalegroup_pg_fate="will be skipped here"
    fi
    echo "note: PostgreSQL's server programs (initdb, pg_ctl) are not installed, so the" \
         "catalog's PostgreSQL tests $_scalegroup_pg_fate. Install them (sudo apt-get install" \
         "postgresql), or set SCALEGROUP_TEST_POSTGRES_URL to a server's URL." >&2
  fi
fi
