"""Which host system calls a process's seccomp filters let it make, read from the filters
themselves (issue 23 §2: "for gVisor the host system calls its Sentry may make").

/proc/PID/status says only that a process is filtered and by how many programs. The
programs are classic BPF that the kernel runs on each system call's number, architecture,
instruction pointer and arguments; root can copy them out of a stopped process with
ptrace's PTRACE_SECCOMP_GET_FILTER (Linux 4.4+, CAP_SYS_ADMIN; the process must not be
traced by another, as gVisor's stubs are by their Sentry). The process is stopped for the
copy only (PTRACE_SEIZE, PTRACE_INTERRUPT, detach: no signal is delivered to it).

A system call counts as allowed when some path through every filter can return ALLOW (or
LOG) for it with the x86-64 architecture: its arguments and instruction pointer are left
unknown, so a call a filter allows for some arguments only counts ("may make"). The
evaluation follows each branch that depends on an unknown value; classic BPF only jumps
forward, so it ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Sequence

Instruction = tuple[int, int, int, int]  # code, jt, jf, k (struct sock_filter)

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000  # waitpid's __WALL: any thread of the tracee

AUDIT_ARCH_X86_64 = 0xC000003E
SYSCALLS = 512  # x86-64's numbers (about 460 used) are below this
RET_ACTION = 0xFFFF0000  # SECCOMP_RET_ACTION_FULL
ALLOWING = (0x7FFF0000, 0x7FFC0000)  # SECCOMP_RET_ALLOW, SECCOMP_RET_LOG
MAX_STATES = 200_000  # a bound on one call's exploration (a filter is at most 4096 long)


class FilterError(Exception):
    """The filters could not be read or evaluated; the message says why, in a few words."""


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


def read_filters(pid: int) -> list[list[Instruction]]:
    """The seccomp programs of process `pid` (this machine's), first installed first."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

    def ptrace(request: int, addr: int, data: object) -> int:
        return int(libc.ptrace(request, pid, ctypes.c_void_p(addr), data))

    if ptrace(PTRACE_SEIZE, 0, None) != 0:
        raise FilterError(f"ptrace refused: {os.strerror(ctypes.get_errno())}")
    try:
        if ptrace(PTRACE_INTERRUPT, 0, None) != 0:
            raise FilterError(f"ptrace interrupt refused: {os.strerror(ctypes.get_errno())}")
        os.waitpid(pid, WALL)
        programs: list[list[Instruction]] = []
        # The kernel numbers them from the newest (0); the oldest is the last index.
        for index in range(1024):
            n = ptrace(PTRACE_SECCOMP_GET_FILTER, index, None)
            if n < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT or (err == errno.EINVAL and index == 0):
                    break  # past the oldest; EINVAL at 0: no filter at all
                raise FilterError(f"the kernel gave no filter: {os.strerror(err)}")
            buf = (_SockFilter * n)()
            if ptrace(PTRACE_SECCOMP_GET_FILTER, index, ctypes.byref(buf)) != n:
                raise FilterError("a filter changed while it was read")
            programs.append([(i.code, i.jt, i.jf, i.k) for i in buf])
        return programs[::-1]
    finally:
        ptrace(PTRACE_DETACH, 0, None)


# Classic BPF opcodes (linux/bpf_common.h) the evaluation knows.
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, ABS, IMM, MEM, LEN = 0x00, 0x20, 0x00, 0x60, 0x80
K, X = 0x00, 0x08
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0,
)  # fmt: skip
SECCOMP_DATA_LEN = 64  # nr, arch, instruction_pointer, 6 arguments


def _alu(op: int, a: int, b: int) -> int | None:
    if op in (DIV, MOD) and b == 0:
        return None
    result = {
        ADD: lambda: a + b,
        SUB: lambda: a - b,
        MUL: lambda: a * b,
        DIV: lambda: a // b,
        OR: lambda: a | b,
        AND: lambda: a & b,
        LSH: lambda: a << (b & 31),
        RSH: lambda: a >> (b & 31),
        NEG: lambda: -a,
        MOD: lambda: a % b,
        XOR: lambda: a ^ b,
    }.get(op)
    return None if result is None else result() & 0xFFFFFFFF


def may_allow(program: Sequence[Instruction], nr: int, arch: int = AUDIT_ARCH_X86_64) -> bool:
    """Whether some path through `program` returns an allowing action for system call
    `nr` of `arch`, the other fields of its seccomp_data unknown."""
    # A state: pc, A, X, the 16 scratch words; None is an unknown value.
    start: tuple[int, int | None, int | None, tuple[int | None, ...]] = (0, 0, 0, (0,) * 16)
    todo, seen = [start], {start}
    while todo:
        if len(seen) > MAX_STATES:
            raise FilterError("a filter branches too much to evaluate")
        pc, a, x, mem = todo.pop()
        if pc >= len(program):
            raise FilterError("a filter runs past its end")
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        nexts: list[tuple[int, int | None, int | None, tuple[int | None, ...]]] = []
        if cls == RET:
            action = a if code & 0x18 == 0x10 else k  # BPF_A or BPF_K
            if action is None or action & RET_ACTION in ALLOWING:
                return True
            continue
        if cls in (LD, LDX):
            mode = code & 0xE0
            if mode == ABS and cls == LD:
                if k % 4 or k >= SECCOMP_DATA_LEN:
                    raise FilterError(f"a filter loads seccomp_data at {k}")
                value: int | None = {0: nr, 4: arch}.get(k)  # the rest: unknown
            elif mode == IMM:
                value = k
            elif mode == MEM:
                value = mem[k & 15]
            elif mode == LEN:
                value = SECCOMP_DATA_LEN
            else:
                raise FilterError(f"a filter uses load mode {mode:#x}")
            nexts = [(pc + 1, value, x, mem) if cls == LD else (pc + 1, a, value, mem)]
        elif cls in (ST, STX):
            stored = list(mem)
            stored[k & 15] = a if cls == ST else x
            nexts = [(pc + 1, a, x, tuple(stored))]
        elif cls == ALU:
            operand = x if code & X else k
            op = code & 0xF0
            nexts = [
                (
                    pc + 1,
                    None if a is None or operand is None else _alu(op, a, operand),
                    x,
                    mem,
                )
            ]
        elif cls == MISC:
            nexts = [(pc + 1, a, a, mem) if code & 0xF8 == 0 else (pc + 1, x, x, mem)]
        elif cls == JMP:
            op = code & 0xF0
            if op == JA:
                nexts = [(pc + 1 + k, a, x, mem)]
            else:
                operand = x if code & X else k
                if a is None or operand is None:
                    taken: bool | None = None
                elif op == JEQ:
                    taken = a == operand
                elif op == JGT:
                    taken = a > operand
                elif op == JGE:
                    taken = a >= operand
                elif op == JSET:
                    taken = bool(a & operand)
                else:
                    raise FilterError(f"a filter uses jump {op:#x}")
                if taken is not False:
                    nexts.append((pc + 1 + jt, a, x, mem))
                if taken is not True:
                    nexts.append((pc + 1 + jf, a, x, mem))
        else:
            raise FilterError(f"a filter uses instruction class {cls}")
        for state in nexts:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return False


def allowed_syscalls(programs: Sequence[Sequence[Instruction]]) -> list[int]:
    """The x86-64 system call numbers every one of `programs` may allow (the kernel runs
    them all and takes the strictest answer)."""
    return [nr for nr in range(SYSCALLS) if all(may_allow(p, nr) for p in programs)]
