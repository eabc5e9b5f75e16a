#!/usr/bin/env bash
# Installs the Debian packages loom needs, only those missing. Usage: deps.sh [run|test]
set -euo pipefail
mode=${1:-run}
pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libcriterion-dev libopenblas-openmp-dev fortunes festlex-cmu
      wamerican wngerman wfrench wspanish witalian wdutch wportuguese wswedish)
if [ "$mode" = test ]; then
  pkgs+=(python3-torch python3-h5py python3-numpy libopenblas0-pthread libtcmalloc-minimal4)
fi
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "loom: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "loom: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
