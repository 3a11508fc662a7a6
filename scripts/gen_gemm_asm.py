#!/usr/bin/env python3
"""Generates compute/gemm/kernels_amd64.s, the register-blocked GEMM micro-kernels.

Each kernel computes, for an MR x NR tile:
    acc[i][j] = sum_p A(i,p) * B(p,j)
    C[i][j]   = alpha*acc[i][j] + beta*C[i][j]     (C not read when beta == 0)
where A(i,p) lives at a + i*rsA + p*csA (byte strides, any layout: broadcast loads),
B(p,j) at b + p*rsB + 4*j (NR contiguous floats per row p), C(i,j) at c + i*rsC + 4*j.

Go signature (kernels_amd64.go):
    func kernXxY(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr,
                 c *float32, rsC uintptr, alpha, beta float32)

Run: python3 scripts/gen_gemm_asm.py > compute/gemm/kernels_amd64.s
"""

FRAME = "$0-72"
ARGS = dict(k=0, a=8, rsA=16, csA=24, b=32, rsB=40, c=48, rsC=56, alpha=64, beta=68)


def arg(name, size):
    return f"{name}+{ARGS[name]}(FP)"


def kernel(name, mr, nvec, vreg, width_bytes, first_acc, bcast_regs, unroll):
    """mr rows, nvec vectors per row; vreg 'Z' or 'Y'."""
    out = []
    w = out.append
    w(f"// func {name}(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32)")
    w(f"TEXT ·{name}(SB), NOSPLIT, {FRAME}")
    w(f"\tMOVQ {arg('k', 8)}, AX")
    w(f"\tMOVQ {arg('a', 8)}, SI")
    w(f"\tMOVQ {arg('rsA', 8)}, R10")
    w(f"\tMOVQ {arg('csA', 8)}, R11")
    w(f"\tMOVQ {arg('b', 8)}, BX")
    w(f"\tMOVQ {arg('rsB', 8)}, R12")
    w(f"\tMOVQ {arg('c', 8)}, CX")
    w(f"\tMOVQ {arg('rsC', 8)}, R13")
    # Row bases: each base register addresses 3 rows: (base), (base)(R10*1), (base)(R10*2).
    bases = ["SI", "DI", "R8", "R9", "R14", "R15"][: (mr + 2) // 3]
    w("\tLEAQ (R10)(R10*2), DX // 3*rsA")
    for i in range(1, len(bases)):
        w(f"\tLEAQ ({bases[i-1]})(DX*1), {bases[i]}")
    acc = [[f"{vreg}{first_acc + i*nvec + j}" for j in range(nvec)] for i in range(mr)]
    breg = [f"{vreg}{j}" for j in range(nvec)]
    for row in acc:
        for r in row:
            w(f"\tVXORPS {r}, {r}, {r}")
    w("\tTESTQ AX, AX")
    w("\tJEQ store")

    def body():
        for j in range(nvec):
            off = j * width_bytes
            w(f"\tVMOVUPS {off}(BX), {breg[j]}" if off else f"\tVMOVUPS (BX), {breg[j]}")
        w("\tADDQ R12, BX")
        for i in range(mr):
            base = bases[i // 3]
            addr = [f"({base})", f"({base})(R10*1)", f"({base})(R10*2)"][i % 3]
            br = bcast_regs[i % len(bcast_regs)]
            w(f"\tVBROADCASTSS {addr}, {br}")
            for j in range(nvec):
                w(f"\tVFMADD231PS {breg[j]}, {br}, {acc[i][j]}")
        for base in bases:
            w(f"\tADDQ R11, {base}")

    if unroll > 1:
        w(f"\tCMPQ AX, ${unroll}")
        w("\tJLT tail")
        w("loop:")
        for _ in range(unroll):
            body()
        w(f"\tSUBQ ${unroll}, AX")
        w(f"\tCMPQ AX, ${unroll}")
        w("\tJGE loop")
        w("\tTESTQ AX, AX")
        w("\tJEQ store")
    w("tail:")
    body()
    w("\tDECQ AX")
    w("\tJNE tail")

    w("store:")
    w(f"\tVBROADCASTSS {arg('alpha', 4)}, {breg[0]}")
    for row in acc:
        for r in row:
            w(f"\tVMULPS {breg[0]}, {r}, {r}")
    w(f"\tMOVL {arg('beta', 4)}, DX")
    w("\tANDL $0x7fffffff, DX")
    w("\tJEQ nobeta")
    w(f"\tVBROADCASTSS {arg('beta', 4)}, {breg[0]}")
    w("\tMOVQ CX, DI")
    for i in range(mr):
        for j in range(nvec):
            off = j * width_bytes
            m = f"{off}(DI)" if off else "(DI)"
            w(f"\tVFMADD231PS {m}, {breg[0]}, {acc[i][j]}")
        w("\tADDQ R13, DI")
    w("nobeta:")
    for i in range(mr):
        for j in range(nvec):
            off = j * width_bytes
            m = f"{off}(CX)" if off else "(CX)"
            w(f"\tVMOVUPS {acc[i][j]}, {m}")
        w("\tADDQ R13, CX")
    w("\tVZEROUPPER")
    w("\tRET")
    return "\n".join(out)


def transpose16():
    """transpose16avx512(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n int)

    Reads n (1..16) rows of 16 floats at src + r*srcStride and writes 16 rows of n floats
    at dst + c*dstStride: dst row c holds column c of the input. Rows >= n are not read;
    floats >= n in the output rows are not written (masked stores)."""
    out = []
    w = out.append
    w("// func transpose16avx512(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n int)")
    w("TEXT ·transpose16avx512(SB), NOSPLIT, $0-40")
    w("\tMOVQ src+0(FP), SI")
    w("\tMOVQ srcStride+8(FP), R8")
    w("\tMOVQ dst+16(FP), DI")
    w("\tMOVQ dstStride+24(FP), R9")
    w("\tMOVQ n+32(FP), CX")
    # mask = (1<<n)-1
    w("\tMOVL $1, AX")
    w("\tSHLL CX, AX")
    w("\tDECL AX")
    w("\tKMOVW AX, K1")
    for r in range(16):
        w(f"\tVXORPS Z{r}, Z{r}, Z{r}")
    for r in range(16):
        w(f"\tCMPQ CX, ${r}")
        w("\tJLE loaded")
        w(f"\tVMOVUPS (SI), Z{r}")
        w("\tADDQ R8, SI")
    w("loaded:")
    R = [f"Z{i}" for i in range(16)]
    T = [f"Z{i}" for i in range(16, 32)]
    # stage 1: 32-bit interleave of row pairs
    for i in range(0, 16, 2):
        w(f"\tVUNPCKLPS {R[i+1]}, {R[i]}, {T[i]}")
        w(f"\tVUNPCKHPS {R[i+1]}, {R[i]}, {T[i+1]}")
    # stage 2: 64-bit interleave
    for g in range(0, 16, 4):
        t0, t1, t2, t3 = T[g], T[g+1], T[g+2], T[g+3]
        w(f"\tVUNPCKLPD {t2}, {t0}, {R[g]}")
        w(f"\tVUNPCKHPD {t2}, {t0}, {R[g+1]}")
        w(f"\tVUNPCKLPD {t3}, {t1}, {R[g+2]}")
        w(f"\tVUNPCKHPD {t3}, {t1}, {R[g+3]}")
    # stage 3: 128-bit lanes, groups (0,4) and (8,12)
    for base, tb in ((0, 0), (8, 8)):
        for i in range(4):
            a, b = R[base+i], R[base+4+i]
            w(f"\tVSHUFF32X4 $0x88, {b}, {a}, {T[tb+2*i]}")
            w(f"\tVSHUFF32X4 $0xdd, {b}, {a}, {T[tb+2*i+1]}")
    # stage 4: output column c
    # T[2i] holds cols i and i+8 (of rows 0..7), T[2i+1] cols i+4, i+12; same for T[8+..] rows 8..15
    cols = {}
    for i in range(4):
        for hi in (0, 1):
            a, b = T[2*i+hi], T[8+2*i+hi]
            c0 = i + 4*hi
            w(f"\tVSHUFF32X4 $0x88, {b}, {a}, {R[c0]}")
            w(f"\tVSHUFF32X4 $0xdd, {b}, {a}, {R[c0+8]}")
    for c in range(16):
        w(f"\tVMOVUPS {R[c]}, K1, (DI)")
        w("\tADDQ R9, DI")
    w("\tVZEROUPPER")
    w("\tRET")
    return "\n".join(out)


print("// Code generated by scripts/gen_gemm_asm.py; DO NOT EDIT.")
print()
print("//go:build amd64 && !purego")
print()
print('#include "textflag.h"')
print()
# AVX-512: 12x32 tile, 24 zmm accumulators Z8..Z31, B in Z0,Z1, broadcasts rotate Z2..Z7.
print(kernel("kern12x32avx512", 12, 2, "Z", 64, 8, ["Z2", "Z3", "Z4", "Z5", "Z6", "Z7"], 2))
print()
print(transpose16())
print()
# AVX2: 6x16 tile, 12 ymm accumulators Y4..Y15, B in Y0,Y1, broadcasts Y2,Y3.
print(kernel("kern6x16avx2", 6, 2, "Y", 32, 4, ["Y2", "Y3"], 2))
