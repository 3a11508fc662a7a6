// Command asmgen writes compute/blas/kernels_amd64.s, the assembly micro-kernels of the
// CPU backend. Run it through `go generate ./compute/blas` after changing it; the output
// is committed, so builds need nothing but the Go toolchain.
//
// Kernels (Go declarations in kernels_amd64.go):
//
//	kern12x32avx512, kern6x16avx2  register-blocked GEMM micro-kernels
//	transpose16avx512              16×16 register transpose, for packing Bᵀ panels
//	axpyavx512                     y += alpha·x
//	peakavx512, peakavx2           register-only multiply-adds: the core's ceiling
//
// A GEMM micro-kernel computes, for an MR×NR tile,
//
//	acc[i][j] = Σ_p A(i,p)·B(p,j);  C[i][j] = alpha·acc[i][j] + beta·C[i][j]
//
// with A(i,p) at a+i·rsA+p·csA (byte strides: A is broadcast element by element, so any
// layout works), B(p,j) at b+p·rsB+4j (NR contiguous floats per row p) and C(i,j) at
// c+i·rsC+4j. C is read only when beta ≠ 0. Only rows i < rows and columns j whose bit is
// set in mask are stored (the AVX-512 kernel; the AVX2 kernel always stores whole tiles).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
)

// args are the frame offsets of the micro-kernel arguments:
// (k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr,
// alpha, beta float32, rows int, mask uint64).
var args = map[string]int{"k": 0, "a": 8, "rsA": 16, "csA": 24, "b": 32, "rsB": 40, "c": 48, "rsC": 56,
	"alpha": 64, "beta": 68, "rows": 72, "mask": 80}

const kernelFrame = "$0-88"

func arg(name string) string { return fmt.Sprintf("%s+%d(FP)", name, args[name]) }

type gen struct{ b bytes.Buffer }

func (g *gen) f(format string, a ...any) { fmt.Fprintf(&g.b, format+"\n", a...) }
func (g *gen) i(format string, a ...any) { g.f("\t"+format, a...) }

func mem(off int, base string) string {
	if off == 0 {
		return "(" + base + ")"
	}
	return fmt.Sprintf("%d(%s)", off, base)
}

// kernel writes an mr×(nvec·lanes) GEMM micro-kernel. vreg is "Z" or "Y"; accumulators
// start at register firstAcc; bcast are the registers broadcasts rotate through; masked
// says whether the store honours rows and mask (AVX-512 only).
func (g *gen) kernel(name string, mr, nvec int, vreg string, width, firstAcc int, bcast []string, unroll int, masked bool) {
	g.f("// func %s(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64)", name)
	g.f("TEXT ·%s(SB), NOSPLIT, %s", name, kernelFrame)
	for _, r := range [][2]string{{"k", "AX"}, {"a", "SI"}, {"rsA", "R10"}, {"csA", "R11"}, {"b", "BX"}, {"rsB", "R12"}, {"c", "CX"}, {"rsC", "R13"}} {
		g.i("MOVQ %s, %s", arg(r[0]), r[1])
	}
	// Each base register addresses three rows: (base), (base)(R10*1), (base)(R10*2).
	bases := []string{"SI", "DI", "R8", "R9", "R14", "R15"}[:(mr+2)/3]
	g.i("LEAQ (R10)(R10*2), DX")
	for i := 1; i < len(bases); i++ {
		g.i("LEAQ (%s)(DX*1), %s", bases[i-1], bases[i])
	}
	acc := make([][]string, mr)
	for i := range acc {
		for j := range nvec {
			acc[i] = append(acc[i], fmt.Sprintf("%s%d", vreg, firstAcc+i*nvec+j))
		}
	}
	breg := make([]string, nvec)
	for j := range breg {
		breg[j] = fmt.Sprintf("%s%d", vreg, j)
	}
	for _, row := range acc {
		for _, r := range row {
			g.i("VXORPS %s, %s, %s", r, r, r)
		}
	}
	g.i("TESTQ AX, AX")
	g.i("JEQ store")
	body := func() {
		for j := range nvec {
			g.i("VMOVUPS %s, %s", mem(j*width, "BX"), breg[j])
		}
		g.i("ADDQ R12, BX")
		for i := range mr {
			base := bases[i/3]
			addr := []string{"(" + base + ")", "(" + base + ")(R10*1)", "(" + base + ")(R10*2)"}[i%3]
			br := bcast[i%len(bcast)]
			g.i("VBROADCASTSS %s, %s", addr, br)
			for j := range nvec {
				g.i("VFMADD231PS %s, %s, %s", breg[j], br, acc[i][j])
			}
		}
		for _, b := range bases {
			g.i("ADDQ R11, %s", b)
		}
	}
	if unroll > 1 {
		g.i("CMPQ AX, $%d", unroll)
		g.i("JLT tail")
		g.f("loop:")
		for range unroll {
			body()
		}
		g.i("SUBQ $%d, AX", unroll)
		g.i("CMPQ AX, $%d", unroll)
		g.i("JGE loop")
		g.i("TESTQ AX, AX")
		g.i("JEQ store")
	}
	g.f("tail:")
	body()
	g.i("DECQ AX")
	g.i("JNE tail")

	g.f("store:")
	g.i("VBROADCASTSS %s, %s", arg("alpha"), breg[0])
	for _, row := range acc {
		for _, r := range row {
			g.i("VMULPS %s, %s, %s", breg[0], r, r)
		}
	}
	kmask := func(j int) string { return "" }
	if masked {
		g.i("MOVQ %s, AX", arg("rows"))
		g.i("MOVQ %s, DX", arg("mask"))
		for j := range nvec {
			g.i("KMOVW DX, K%d", j+1)
			if j+1 < nvec {
				g.i("SHRQ $16, DX")
			}
		}
		kmask = func(j int) string { return fmt.Sprintf("K%d, ", j+1) }
	}
	rowCheck := func(i int, label string) {
		if masked && i > 0 {
			g.i("CMPQ AX, $%d", i)
			g.i("JLE %s", label)
		}
	}
	g.i("MOVL %s, DX", arg("beta"))
	g.i("ANDL $0x7fffffff, DX")
	g.i("JEQ nobeta")
	g.i("VBROADCASTSS %s, %s", arg("beta"), breg[0])
	g.i("MOVQ CX, DI")
	for i := range mr {
		rowCheck(i, "nobeta")
		for j := range nvec {
			g.i("VFMADD231PS %s, %s, %s%s", mem(j*width, "DI"), breg[0], kmask(j), acc[i][j])
		}
		g.i("ADDQ R13, DI")
	}
	g.f("nobeta:")
	for i := range mr {
		rowCheck(i, "done")
		for j := range nvec {
			g.i("VMOVUPS %s, %s%s", acc[i][j], kmask(j), mem(j*width, "CX"))
		}
		g.i("ADDQ R13, CX")
	}
	g.f("done:")
	g.i("VZEROUPPER")
	g.i("RET")
}

// transpose16 writes transpose16avx512(src *float32, srcStride uintptr, dst *float32,
// dstStride uintptr, n int): it reads n (1..16) rows of 16 floats at src+r·srcStride and
// writes 16 rows of n floats at dst+c·dstStride, row c holding column c of the input.
// Rows ≥ n are not read; floats ≥ n of the output rows are not written.
func (g *gen) transpose16() {
	g.f("// func transpose16avx512(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n int)")
	g.f("TEXT ·transpose16avx512(SB), NOSPLIT, $0-40")
	g.i("MOVQ src+0(FP), SI")
	g.i("MOVQ srcStride+8(FP), R8")
	g.i("MOVQ dst+16(FP), DI")
	g.i("MOVQ dstStride+24(FP), R9")
	g.i("MOVQ n+32(FP), CX")
	g.i("MOVL $1, AX")
	g.i("SHLL CX, AX")
	g.i("DECL AX")
	g.i("KMOVW AX, K1")
	R := make([]string, 16)
	T := make([]string, 16)
	for i := range 16 {
		R[i] = fmt.Sprintf("Z%d", i)
		T[i] = fmt.Sprintf("Z%d", 16+i)
	}
	for r := range 16 {
		g.i("VXORPS %s, %s, %s", R[r], R[r], R[r])
	}
	for r := range 16 {
		g.i("CMPQ CX, $%d", r)
		g.i("JLE loaded")
		g.i("VMOVUPS (SI), %s", R[r])
		g.i("ADDQ R8, SI")
	}
	g.f("loaded:")
	// Stage 1: interleave 32-bit elements of row pairs.
	for i := 0; i < 16; i += 2 {
		g.i("VUNPCKLPS %s, %s, %s", R[i+1], R[i], T[i])
		g.i("VUNPCKHPS %s, %s, %s", R[i+1], R[i], T[i+1])
	}
	// Stage 2: interleave 64-bit pairs: R[g+c] holds column 4L+c of rows g..g+3 in lane L.
	for q := 0; q < 16; q += 4 {
		g.i("VUNPCKLPD %s, %s, %s", T[q+2], T[q], R[q])
		g.i("VUNPCKHPD %s, %s, %s", T[q+2], T[q], R[q+1])
		g.i("VUNPCKLPD %s, %s, %s", T[q+3], T[q+1], R[q+2])
		g.i("VUNPCKHPD %s, %s, %s", T[q+3], T[q+1], R[q+3])
	}
	// Stage 3: combine 128-bit lanes of row groups (0-3, 4-7) and (8-11, 12-15).
	for _, base := range []int{0, 8} {
		for i := range 4 {
			a, b := R[base+i], R[base+4+i]
			g.i("VSHUFF32X4 $0x88, %s, %s, %s", b, a, T[base+2*i])
			g.i("VSHUFF32X4 $0xdd, %s, %s, %s", b, a, T[base+2*i+1])
		}
	}
	// Stage 4: whole columns.
	for i := range 4 {
		for hi := range 2 {
			a, b := T[2*i+hi], T[8+2*i+hi]
			c := i + 4*hi
			g.i("VSHUFF32X4 $0x88, %s, %s, %s", b, a, R[c])
			g.i("VSHUFF32X4 $0xdd, %s, %s, %s", b, a, R[c+8])
		}
	}
	for c := range 16 {
		g.i("VMOVUPS %s, K1, (DI)", R[c])
		g.i("ADDQ R9, DI")
	}
	g.i("VZEROUPPER")
	g.i("RET")
}

// axpy writes axpyavx512(n int, alpha float32, x, y *float32): y[i] += alpha·x[i] for
// i < n, where n is a multiple of 64.
func (g *gen) axpy() {
	g.f("// func axpyavx512(n int, alpha float32, x, y *float32)")
	g.f("TEXT ·axpyavx512(SB), NOSPLIT, $0-32")
	g.i("MOVQ n+0(FP), CX")
	g.i("VBROADCASTSS alpha+8(FP), Z0")
	g.i("MOVQ x+16(FP), SI")
	g.i("MOVQ y+24(FP), DI")
	g.i("SHRQ $6, CX")
	g.i("JEQ axpydone")
	g.f("axpyloop:")
	for j := range 4 {
		g.i("VMOVUPS %s, Z%d", mem(64*j, "DI"), 1+j)
	}
	for j := range 4 {
		g.i("VFMADD231PS %s, Z0, Z%d", mem(64*j, "SI"), 1+j)
	}
	for j := range 4 {
		g.i("VMOVUPS Z%d, %s", 1+j, mem(64*j, "DI"))
	}
	g.i("ADDQ $256, SI")
	g.i("ADDQ $256, DI")
	g.i("DECQ CX")
	g.i("JNE axpyloop")
	g.f("axpydone:")
	g.i("VZEROUPPER")
	g.i("RET")
}

// peak writes peakavx512(n int) and peakavx2(n int): n iterations of 24 (12) independent
// multiply-adds on registers, to measure the core's floating-point ceiling.
func (g *gen) peak(name, vreg string, accs int) {
	g.f("// func %s(n int)", name)
	g.f("TEXT ·%s(SB), NOSPLIT, $0-8", name)
	g.i("MOVQ n+0(FP), CX")
	for r := 0; r < accs+2; r++ {
		g.i("VXORPS %s%d, %s%d, %s%d", vreg, r, vreg, r, vreg, r)
	}
	g.i("TESTQ CX, CX")
	g.i("JEQ %sdone", name)
	g.f("%sloop:", name)
	for r := 2; r < accs+2; r++ {
		g.i("VFMADD231PS %s0, %s1, %s%d", vreg, vreg, vreg, r)
	}
	g.i("DECQ CX")
	g.i("JNE %sloop", name)
	g.f("%sdone:", name)
	g.i("VZEROUPPER")
	g.i("RET")
}

func main() {
	out := flag.String("out", "kernels_amd64.s", "output file")
	flag.Parse()
	var g gen
	g.f("// Code generated by compute/blas/internal/asmgen; DO NOT EDIT.")
	g.f("")
	g.f("//go:build amd64 && !purego")
	g.f("")
	g.f(`#include "textflag.h"`)
	g.f("")
	// AVX-512: 12×32 tile, 24 zmm accumulators Z8..Z31, B in Z0, Z1, broadcasts Z2..Z7.
	g.kernel("kern12x32avx512", 12, 2, "Z", 64, 8, []string{"Z2", "Z3", "Z4", "Z5", "Z6", "Z7"}, 2, true)
	g.f("")
	g.transpose16()
	g.f("")
	g.axpy()
	g.f("")
	// AVX2: 6×16 tile, 12 ymm accumulators Y4..Y15, B in Y0, Y1, broadcasts Y2, Y3.
	g.kernel("kern6x16avx2", 6, 2, "Y", 32, 4, []string{"Y2", "Y3"}, 2, false)
	g.f("")
	g.peak("peakavx512", "Z", 24)
	g.f("")
	g.peak("peakavx2", "Y", 12)
	src := strings.TrimRight(g.b.String(), "\n") + "\n"
	if err := os.WriteFile(*out, []byte(src), 0o644); err != nil {
		log.Fatal(err)
	}
}
