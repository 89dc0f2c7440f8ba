# Sourced by scripts/quickstart and scripts/test after _venv.sh: installs what the NER
# example's model needs (examples/ner/models/requirements.txt: spaCy and its English pipeline)
# into .venv. The local backend runs no Dockerfile RUN step, so the replicas use .venv's
# packages. Reinstalls only when that file changed since the last install.
_scalegroup_requirements=examples/ner/models/requirements.txt
_scalegroup_stamp=.venv/.scalegroup-example-installed
_scalegroup_want=$(sha256sum "$_scalegroup_requirements" | cut -d' ' -f1)
if [ "$(cat "$_scalegroup_stamp" 2>/dev/null)" != "$_scalegroup_want" ]; then
  echo "==> installing the NER model's packages into .venv ($_scalegroup_requirements: spaCy" \
    "and its English pipeline; the log in .venv/example-install.log)"
  run_quietly "installing the NER model's packages" .venv/example-install.log \
    .venv/bin/python -m pip install -r "$_scalegroup_requirements" || exit 1
  echo "$_scalegroup_want" >"$_scalegroup_stamp"
fi
