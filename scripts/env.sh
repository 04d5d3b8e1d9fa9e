# Sourced by the quick-start scripts: installs what the build needs on a
# fresh Debian machine (protoc for lance) and picks the shared target dir.
set -euo pipefail

if ! command -v protoc >/dev/null 2>&1; then
  echo "protoc is missing: installing Debian's protobuf-compiler" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq protobuf-compiler >&2
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq protobuf-compiler >&2
  fi
fi

# One target dir outside the clone, reused by every run and profile user:
# the first build of lance and datafusion is long.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/leman/target}"
