# Where up.sh and down.sh keep things: outside the repository, so a tour
# leaves the working tree as it found it. Override with the variables.
RUN=${DRCTL_LOCAL_RUN:-${TMPDIR:-/tmp}/drctl-local-$(id -u)}
VENV=${DRCTL_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/drctl/moto-venv}
