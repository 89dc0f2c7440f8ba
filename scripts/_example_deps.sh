# Sourced by scripts/quickstart and scripts/test after _venv.sh: installs what the NER
# example's model needs (examples/ner/models/requirements.txt: spaCy and its English pipeline)
# into .venv. The local backend runs no Dockerfile RUN step, so the replicas use .venv's
# packages. Reinstalls only when that file changed since the last install.
_scalegroup_requirements=examples/ner/models/requirements.txt
_scalegroup_stamp=.venv/.scalegroup-example-installed
_scalegroup_want=$(sha256sum "$_scalegroup_requirements" | cut -d' ' -f1)
if [ "$(cat "$_scalegroup_stamp" 2>/dev/null)" != "$_scalegroup_want" ]; then
  echo "==> installing the NER model's packages into .venv ($_scalegroup_requirements)"
  _scalegroup_log=.venv/example-install.log
  if ! .venv/bin/python -m pip install -r "$_scalegroup_requirements" >"$_scalegroup_log" 2>&1
  then
    tail -n 40 "$_scalegroup_log" >&2
    echo "installing $_scalegroup_requirements failed; the whole log is in $_scalegroup_log" >&2
    exit 1
  fi
  echo "$_scalegroup_want" >"$_scalegroup_stamp"
fi
