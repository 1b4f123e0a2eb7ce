#!/usr/bin/env bash
# The demo run by `./dev demo`: syscalls through the real driver runtime,
# with the capability checks an agent would get.
set -euo pipefail
AOS=${1:?usage: demo.sh PATH-TO-aos}
export AOS_HOME=${AOS_HOME:-$(mktemp -d)/aos-home}
WS=$(mktemp -d)
# Bold only on a terminal, and not with NO_COLOR set.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$N"; "$@" || true; }

echo "AgentOS demo — AOS_HOME=$AOS_HOME, workspace=$WS"
step "$AOS" driver ls
step "$AOS" driver call fs FS_WRITE '{"path":"haiku.txt","content":"waves fold into foam\nthe tide writes, the tide erases\nsalt on the warm stone\n"}' --grant fs:rw --workspace "$WS"
step "$AOS" driver call fs FS_READ '{"path":"haiku.txt"}' --grant fs:ro --workspace "$WS"
echo; echo "# a read-only agent cannot write, and no agent can leave its workspace:"
step "$AOS" driver call fs FS_WRITE '{"path":"haiku.txt","content":"overwritten"}' --grant fs:ro --workspace "$WS"
step "$AOS" driver call fs FS_READ '{"path":"../../etc/passwd"}' --grant fs:ro --workspace "$WS"
step "$AOS" driver call timers SYS_SCHEDULE '{"seconds":60,"prompt":"check the tide"}' --grant timers

echo; echo "# a whole agent process: the kernel loop with replies replayed from a script"
echo "# (the embedded offline model runs the same task below; any OpenAI-compatible server works with --provider openai --base-url ...)"
HERE=$(cd "$(dirname "$0")/.." && pwd)
RUNWS=$(mktemp -d)
step "$AOS" run --provider script --model "$HERE/examples/scripts/haiku.txt" --workspace "$RUNWS" \
    "write a haiku about the sea to haiku.txt, then exit"
step cat "$RUNWS/haiku.txt"

echo; echo "# the same task on the embedded offline model (SmolLM2-135M, llama.cpp, grammar-constrained):"
echo "# the calls are built from the task's words and the results; the model composes the haiku in a turn"
echo "# of its own, and the exit says what was done (evals/README.md). tests/all/run_cli.rs runs this command."
LOCALWS=$(mktemp -d)
step "$AOS" run --workspace "$LOCALWS" --grant fs:rw \
    "write a haiku about the sea to haiku.txt, then exit"
step cat "$LOCALWS/haiku.txt"
echo; echo "# a job that cannot be done ends with a non-zero exit naming what failed (expected: exit 1):"
"$AOS" run --workspace "$LOCALWS" --grant fs:rw "copy missing.txt to copy.txt" || echo "(exit $?, as it should)"
