# Runs inside the test VM (busybox sh, as root). Each verdict is one line:
#   VMTEST PASS <name>   or   VMTEST FAIL <name>: <what went wrong>
# so that `cargo xtask vm-test` can report and fail on any of them. Every verdict's name starts
# with the backend it is about (`fexit: ...`): the matrix is made from them.
#
# What this kernel must do comes from the kernel command line (`cargo xtask vm-test`'s matrix):
#   VMTEST_WORKS   the backends that must work, in auto's order (auto must pick the first)
#   VMTEST_ABSENT  the backends that must fail with a one-line error and exit 3 ("none": none)
#   VMTEST_ARCH    x86_64 or aarch64
works=$(echo "${VMTEST_WORKS:?}" | tr , ' ')
absent=$(echo "${VMTEST_ABSENT:?}" | tr , ' ')
[ "$absent" = none ] && absent=
auto=${works%% *}

pass() { echo "VMTEST PASS $1"; }
fail() { echo "VMTEST FAIL $1: $2"; }

# check NAME CONDITION...: a verdict from a shell condition.
check() {
    name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name" "$*"; return 1; fi
}

# Lines of the verbose text report are `CAP  verdict audit comm syscall xN [site]`.
has_check() { grep -Eq "^    $2 +$3 +$4 " "$1"; }

touch /tmp/f
touch /tmp/rootfile
chmod 644 /tmp/rootfile
# nobody's file in a set-group-ID directory of group root: nobody is not in the file's group.
mkdir -p /tmp/shared
touch /tmp/shared/own
chown nobody:root /tmp/shared /tmp/shared/own
chmod 2775 /tmp/shared

# BPF task works (6.18+) follow a denied check's syscall instead of raw_syscalls:sys_exit.
outcomes="outcomes on raw_syscalls:sys_exit"
if grep -Eq " bpf_task_work_schedule_resume(_impl)?\$" /proc/kallsyms; then
    outcomes="outcomes by task work"
fi
echo "VMTEST INFO backends: $works; auto: $auto; $outcomes"

for probe in $works auto; do
    p=/tmp/$probe

    # chown needs exactly CHOWN; the check is granted and audited.
    if cap-trace run --probe "$probe" --json --output "$p-chown.json" -- chown nobody /tmp/f 2> "$p.err"; then
        check "$probe: chown suggests CHOWN" \
            test "$(cap-trace show "$p-chown.json" --format docker)" = "--cap-drop=ALL --cap-add=CHOWN"
        cap-trace show "$p-chown.json" --verbose > "$p-chown.txt"
        check "$probe: chown's check is granted and audited" has_check "$p-chown.txt" CHOWN granted audited
        # The syscall comes from the registers saved at kernel entry, named by this
        # architecture's table (arm64 has no chown(2): fchownat).
        check "$probe: the syscall is named" \
            grep -Eq "^    CHOWN +granted +audited +chown +(chown|lchown|fchownat) " "$p-chown.txt"
        check "$probe: the audit flag is known for every check" \
            sh -c "! grep -q '\"audit\": \"unknown\"' $p-chown.json"
    else
        fail "$probe: chown suggests CHOWN" "cap-trace failed: $(cat "$p.err")"
    fi

    # A program that only reads needs nothing, although the kernel asks for capabilities on
    # the way without audit (sysctl permissions: NET_ADMIN; /proc/PID/stat: SYS_PTRACE);
    # fexit and kprobe read that from the opts argument.
    if cap-trace run --probe "$probe" --json --output "$p-read.json" -- \
        sh -c 'cat /proc/sys/net/ipv4/ip_forward /proc/1/stat > /dev/null; x=$(seq 1 100)' 2> "$p.err"; then
        check "$probe: noaudit-only checks are not required" \
            test "$(cap-trace show "$p-read.json" --format docker)" = "--cap-drop=ALL"
        cap-trace show "$p-read.json" --verbose > "$p-read.txt"
        check "$probe: granted noaudit checks are seen" has_check "$p-read.txt" '[A-Z_]+' granted noaudit
        check "$probe: they are probed, not required" grep -Eq "^  [A-Z_]+ +probed, not required" "$p-read.txt"
        check "$probe: and nothing else is listed" \
            sh -c "! grep -E '^  [A-Z_]+ +(required|needed but missing)' $p-read.txt"
    else
        fail "$probe: noaudit-only checks are not required" "cap-trace failed: $(cat "$p.err")"
    fi

    # A denied check: nobody may not give root's file away; chown fails with EPERM.
    if cap-trace run --probe "$probe" --json --output "$p-denied.json" --user nobody -- chown nobody /tmp/rootfile 2> "$p.err"; then
        cap-trace show "$p-denied.json" --verbose > "$p-denied.txt"
        check "$probe: a denied check is reported denied and audited" has_check "$p-denied.txt" CHOWN denied audited
        # Judged by its EPERM: a non-root process cannot be given it by --cap-add.
        check "$probe: the denial that failed chown is not grantable by --cap-add" grep -q "CHOWN .*not grantable by --cap-add" "$p-denied.txt"
    else
        fail "$probe: a denied check is reported" "cap-trace failed: $(cat "$p.err")"
    fi

    # A denial whose syscall succeeds anyway: chmod g+s by nobody on its own file of a group it
    # is not in is denied FSETID, the kernel drops the bit, and chmod succeeds.
    if cap-trace run --probe "$probe" --json --output "$p-detour.json" --user nobody -- chmod g+s /tmp/shared/own 2> "$p.err"; then
        cap-trace show "$p-detour.json" --verbose > "$p-detour.txt"
        check "$probe: a denial whose syscall succeeds is denied, not required" \
            grep -q "FSETID .*denied, not required" "$p-detour.txt"
    else
        fail "$probe: a denial whose syscall succeeds is denied, not required" "cap-trace failed: $(cat "$p.err")"
    fi

    # Repeats: one process making the same check 40 times is counted exactly. After the first,
    # each goes down the repeat path, which on kernels with the kfunc bpf_rdonly_cast (6.2+)
    # reads the saved syscall number with a plain load.
    mkdir -p /tmp/tree
    for i in $(seq 1 39); do touch /tmp/tree/f$i; done
    chown -R root /tmp/tree
    if cap-trace run --probe "$probe" --json --output "$p-tree.json" -- chown -R nobody /tmp/tree 2> "$p.err"; then
        cap-trace show "$p-tree.json" --verbose > "$p-tree.txt"
        check "$probe: 40 repeated checks are counted exactly" \
            grep -Eq "^    CHOWN +granted +audited +chown +[a-z0-9_]+ +x40( |\$)" "$p-tree.txt" ||
            grep -E "^    CHOWN " "$p-tree.txt"
    else
        fail "$probe: 40 repeated checks are counted exactly" "cap-trace failed: $(cat "$p.err")"
    fi

    # Call sites stay known while other tracers attach to the tracepoint and leave: each moves
    # the stack words the tracepoint backend reads callers from (the other backends read the
    # audit flag from opts). The workload makes checks that security_capable forwards (chown)
    # and others (exec's memory probe) until told to stop.
    if [ "$probe" = tracepoint ]; then
        rm -f /tmp/busy-started /tmp/busy-done
        cap-trace run --probe "$probe" --json --output "$p-busy.json" -- sh -c \
            'touch /tmp/busy-started; n=0; while [ ! -e /tmp/busy-done ] && [ $n -lt 1000 ]; do chown nobody /tmp/f; n=$((n+1)); done' \
            2> "$p-busy.err" &
        busy=$!
        n=0
        while [ ! -e /tmp/busy-started ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
        for i in 1 2; do cap-trace run --probe "$probe" -- true > /dev/null 2>&1; done
        touch /tmp/busy-done
        if wait $busy; then
            check "$probe: call sites stay known while other tracers come and go" \
                sh -c "! grep -q '\"audit\": \"unknown\"' $p-busy.json"
        else
            fail "$probe: call sites stay known while other tracers come and go" "cap-trace failed: $(cat "$p-busy.err")"
        fi
    fi

    # The backend used is reported, and how outcomes were followed.
    expected=$probe
    [ "$probe" = auto ] && expected=$auto
    check "$probe: the backend used is $expected" grep -q "\"backend\": \"$expected\"" "$p-chown.json"
    check "$probe: nothing was lost" grep -q '"complete": true' "$p-chown.json"
    # Every backend takes outcomes by task work where the kernel has it (the loader falls back
    # to sys_exit only when the verifier refuses the task-work program: a defect here).
    check "$probe: $outcomes" grep -q "$outcomes" "$p-chown.json"
done

# A process tree sharing its cgroup with another process (--pid): the kernel follows the tree
# (its child's chown is seen), not the other process (its sethostname is not). Both wait on a
# FIFO, making no syscalls while cap-trace attaches (under TCG, code patched while other CPUs run
# through it can trap), and cap-trace's stderr is read from a FIFO for the same reason.
shared=/sys/fs/cgroup/shared
mkdir -p "$shared"
mkfifo /tmp/tree.fifo /tmp/sibling.fifo /tmp/pid-err.fifo
sh -c "echo \$\$ > $shared/cgroup.procs; read go < /tmp/sibling.fifo; hostname vmtest-sibling" &
sibling=$!
sh -c "echo \$\$ > $shared/cgroup.procs; read go < /tmp/tree.fifo; sh -c 'chown nobody /tmp/f'" &
tree=$!
i=0
while [ "$(wc -l < "$shared/cgroup.procs")" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
cap-trace --pid "$tree" --verbose --json --output /tmp/pid.json 2> /tmp/pid-err.fifo &
tracer=$!
exec 3< /tmp/pid-err.fifo
: > /tmp/pid.err
while read -r line <&3; do
    echo "$line" >> /tmp/pid.err
    case $line in *"attached to"*) break ;; esac
done
cat <&3 >> /tmp/pid.err &
echo go > /tmp/sibling.fifo
echo go > /tmp/tree.fifo
if wait "$tracer"; then
    check "auto: --pid follows a process tree in a shared cgroup, not its neighbour" \
        test "$(cap-trace show /tmp/pid.json --format docker)" = "--cap-drop=ALL --cap-add=CHOWN"
else
    fail "auto: --pid follows a process tree in a shared cgroup, not its neighbour" "cap-trace failed: $(cat /tmp/pid.err)"
fi
wait "$sibling"
exec 3<&-

# A backend this kernel cannot offer: a clear one-line error that names it, exit 3.
for probe in $absent; do
    cap-trace run --probe "$probe" -- true 2> "/tmp/$probe.err"
    code=$?
    check "$probe: exits 3 on this kernel" test "$code" -eq 3
    check "$probe: one line" test "$(wc -l < "/tmp/$probe.err")" -eq 1
    check "$probe: says which backend and why" grep -q "^cap-trace: error: .*$probe: ." "/tmp/$probe.err"
    if [ "$probe" = tracepoint ]; then
        check "tracepoint: says when it came" \
            grep -q "no capability:cap_capable tracepoint (added in Linux 6.14" /tmp/tracepoint.err
    fi
done

# Loading the programs must not make the kernel warn (before 6.1, a tracing program with a map
# allocated at run time does) or worse.
dmesg > /tmp/dmesg
check "kernel: no warning while tracing" sh -c "! grep -E 'WARNING:|BUG:|Oops|Call Trace' /tmp/dmesg"
grep -E -A3 'WARNING:|BUG:|Oops' /tmp/dmesg | head -20
echo "VMTEST ARCH $(uname -m) (expected $VMTEST_ARCH)"
check "kernel: the architecture is $VMTEST_ARCH" test "$(uname -m)" = "$VMTEST_ARCH"
