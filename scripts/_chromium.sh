# Sourced by scripts/test and scripts/screenshots after _venv.sh: makes sure Debian's headless
# Chromium and its driver are installed, for the dashboard's browser tests
# (tests/server/dashboard/test_browser.py) and the README's screenshots. As root, installs
# Debian's chromium and chromium-driver packages when they are missing; otherwise says the
# browser tests will be skipped. Under CI (CI=true) a missing browser fails those tests.

_scalegroup_has_chromium() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

if ! _scalegroup_has_chromium; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> as root: apt-get update && apt-get install chromium chromium-driver (Debian's" \
      "packages, for the dashboard's browser tests; a minute or two; the log in" \
      ".venv/chromium-install.log)"
    _scalegroup_chromium_log="$ROOT/.venv/chromium-install.log"
    run_quietly "installing Chromium" "$_scalegroup_chromium_log" sh -c 'apt-get update &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
        chromium-driver' ||
      exit 1
    if ! _scalegroup_has_chromium; then
      echo "installed Debian's chromium and chromium-driver packages, but found no" \
        "/usr/bin/chromium and /usr/bin/chromedriver; the log is in $_scalegroup_chromium_log" >&2
      exit 1
    fi
  else
    if [ "${CI:-}" = "true" ]; then
      _scalegroup_chromium_fate="will fail (CI=true)"
    else
      _scalegroup_chromium_fate="will be skipped here"
    fi
    echo "note: Chromium and its driver (/usr/bin/chromium, /usr/bin/chromedriver) are not" \
      "installed, so the dashboard's browser tests $_scalegroup_chromium_fate. Install them" \
      "(sudo apt-get install chromium chromium-driver)." >&2
  fi
fi
