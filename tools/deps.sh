#!/usr/bin/env bash
# tools/deps.sh: installs the Debian packages the build and the tests need, when they are missing.
# Called by `make` once (it leaves build/.deps-ok). Set ERNIE_NO_APT=1 to forbid installing: then
# it only lists what is missing and fails.
set -euo pipefail

# What each package is for:
#   gcc g++ make cmake            compilers and SentencePiece's build
#   libxxhash-dev                 XXH3 checksums (libxxhash.a)
#   libedit-dev libbsd-dev libmd-dev libtinfo-dev   line editing for `ernie chat` (static archives)
#   libjansson-dev                JSON (libjansson.a)
#   sentencepiece                 spm_encode/spm_decode/spm_train: the tests' independent tokenizer reference
#   clang libclang-rt-14-dev      libFuzzer and sanitizer runtimes for `make fuzz`
#   ca-certificates               apt over https where the sources use it
pkgs=(gcc g++ make cmake libxxhash-dev libedit-dev libbsd-dev libmd-dev libtinfo-dev libjansson-dev
      sentencepiece clang libclang-rt-14-dev)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "${ERNIE_NO_APT:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
    echo "ernie build: missing Debian packages: ${missing[*]}" >&2
    echo "ernie build: install them with: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "ernie build: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
