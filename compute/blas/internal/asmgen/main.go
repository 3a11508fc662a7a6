// Command asmgen writes compute/blas/kernels_amd64.s, the assembly micro-kernels of the
// CPU backend. Run it through `go generate ./compute/blas` after changing it; the output
// is committed, so builds need nothing but the Go toolchain.
//
// Kernels (Go declarations in kernels_amd64.go):
//
//	kern12x32avx512, kern24x16avx512, kern2x64avx512, kern6x16avx2  register-blocked GEMM micro-kernels
//	transpose16avx512              16×16 register transpose, for packing Bᵀ panels
//	transposeMerge16avx512         the same, storing a tile into a transposed C
//	axpyavx512                     y += alpha·x
//	peakavx512, peakavx2           register-only multiply-adds: the core's ceiling
//	copyRowsavx512, addRowsavx512  strided row copies and sums: im2col and col2im
//	maxPool2x2avx512               branch-free 2×2 max pooling with argmax
//	maxPool2x2Backavx512           its gradient, written window by window
//	im2colavx512                   a whole stride-1 im2col from a table of row runs
//	reluavx512, reluGradavx512     the rectifier and its gradient, branch-free
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
	// Up to 24 rows: CX (C, reloaded at the store) and DX (3·rsA, consumed last) serve
	// as the seventh and eighth bases.
	bases := []string{"SI", "DI", "R8", "R9", "R14", "R15", "CX", "DX"}[:(mr+2)/3]
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
	g.i("MOVQ %s, CX", arg("c"))
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
//
// With merge it writes transposeMerge16avx512(src, srcStride, dst, dstStride, n, m int,
// alpha, beta float32) instead: only the first m output rows, each as
// dst = alpha·column + beta·dst (dst not read when beta = 0). That stores a kernel tile
// into a C that is addressed transposed.
func (g *gen) transpose16(merge bool) {
	name, frame := "transpose16avx512", "$0-40"
	if merge {
		name, frame = "transposeMerge16avx512", "$0-56"
		g.f("// func %s(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n, m int, alpha, beta float32)", name)
	} else {
		g.f("// func %s(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n int)", name)
	}
	g.f("TEXT ·%s(SB), NOSPLIT, %s", name, frame)
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
	lbl := func(s string) string { return name + s }
	for r := range 16 {
		g.i("CMPQ CX, $%d", r)
		g.i("JLE %s", lbl("loaded"))
		g.i("VMOVUPS (SI), %s", R[r])
		g.i("ADDQ R8, SI")
	}
	g.f("%s:", lbl("loaded"))
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
	if !merge {
		for c := range 16 {
			g.i("VMOVUPS %s, K1, (DI)", R[c])
			g.i("ADDQ R9, DI")
		}
		g.i("VZEROUPPER")
		g.i("RET")
		return
	}
	// Z16 = alpha, Z17 = beta; DX = rows to write.
	g.i("MOVQ m+40(FP), DX")
	g.i("VBROADCASTSS alpha+48(FP), Z16")
	g.i("VBROADCASTSS beta+52(FP), Z17")
	g.i("MOVL beta+52(FP), AX")
	g.i("ANDL $0x7fffffff, AX")
	g.i("JEQ %s", lbl("nobeta"))
	for c := range 16 {
		g.i("CMPQ DX, $%d", c)
		g.i("JLE %s", lbl("done"))
		g.i("VMULPS Z16, %s, %s", R[c], R[c])
		g.i("VFMADD231PS (DI), Z17, K1, %s", R[c])
		g.i("VMOVUPS %s, K1, (DI)", R[c])
		g.i("ADDQ R9, DI")
	}
	g.i("JMP %s", lbl("done"))
	g.f("%s:", lbl("nobeta"))
	for c := range 16 {
		g.i("CMPQ DX, $%d", c)
		g.i("JLE %s", lbl("done"))
		g.i("VMULPS Z16, %s, %s", R[c], R[c])
		g.i("VMOVUPS %s, K1, (DI)", R[c])
		g.i("ADDQ R9, DI")
	}
	g.f("%s:", lbl("done"))
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

// tailMask loads into kreg the mask of the low (count & 15) lanes. It clobbers CX and AX.
func (g *gen) tailMask(countReg, kreg string) { g.tailMaskTmp(countReg, kreg, "AX") }

// tailMaskTmp is tailMask with tmp instead of AX as the scratch register (CX is still used).
func (g *gen) tailMaskTmp(countReg, kreg, tmp string) {
	g.i("MOVQ %s, CX", countReg)
	g.i("ANDQ $15, CX")
	g.i("MOVL $1, %s", tmp)
	g.i("SHLL CX, %s", tmp)
	g.i("DECL %s", tmp)
	g.i("KMOVW %s, %s", tmp, kreg)
}

// copyRows writes copyRowsavx512(dst *float32, ldd uintptr, src *float32, lds uintptr,
// rows, lead, width, rowLen int): for each of rows rows, dst[0:rowLen] = zeros with
// src[0:width] copied to dst[lead:lead+width]; strides in bytes. It is im2col's inner
// loop for stride-1 convolutions: a padded shifted copy of an image row.
func (g *gen) copyRows() {
	g.f("// func copyRowsavx512(dst *float32, ldd uintptr, src *float32, lds uintptr, rows, lead, width, rowLen int)")
	g.f("TEXT ·copyRowsavx512(SB), NOSPLIT, $0-64")
	g.i("MOVQ dst+0(FP), DI")
	g.i("MOVQ ldd+8(FP), R10")
	g.i("MOVQ src+16(FP), SI")
	g.i("MOVQ lds+24(FP), R11")
	g.i("MOVQ rows+32(FP), DX")
	g.i("MOVQ lead+40(FP), R12")
	g.i("SHLQ $2, R12")
	g.i("MOVQ width+48(FP), R13")
	g.i("MOVQ rowLen+56(FP), R14")
	g.i("VXORPS Z0, Z0, Z0")
	g.tailMask("R14", "K2")
	g.tailMask("R13", "K3")
	g.i("TESTQ DX, DX")
	g.i("JEQ cpdone")
	g.f("cprow:")
	g.i("MOVQ DI, R8")
	g.i("MOVQ R14, CX")
	g.f("cpzero:")
	g.i("CMPQ CX, $16")
	g.i("JLT cpzerotail")
	g.i("VMOVUPS Z0, (R8)")
	g.i("ADDQ $64, R8")
	g.i("SUBQ $16, CX")
	g.i("JMP cpzero")
	g.f("cpzerotail:")
	g.i("TESTQ CX, CX")
	g.i("JEQ cpcopy")
	g.i("VMOVUPS Z0, K2, (R8)")
	g.f("cpcopy:")
	g.i("LEAQ (DI)(R12*1), R8")
	g.i("MOVQ SI, R9")
	g.i("MOVQ R13, CX")
	g.f("cpcopyloop:")
	g.i("CMPQ CX, $16")
	g.i("JLT cpcopytail")
	g.i("VMOVUPS (R9), Z1")
	g.i("VMOVUPS Z1, (R8)")
	g.i("ADDQ $64, R8")
	g.i("ADDQ $64, R9")
	g.i("SUBQ $16, CX")
	g.i("JMP cpcopyloop")
	g.f("cpcopytail:")
	g.i("TESTQ CX, CX")
	g.i("JEQ cpnext")
	g.i("VMOVUPS.Z (R9), K3, Z1")
	g.i("VMOVUPS Z1, K3, (R8)")
	g.f("cpnext:")
	g.i("ADDQ R10, DI")
	g.i("ADDQ R11, SI")
	g.i("DECQ DX")
	g.i("JNE cprow")
	g.f("cpdone:")
	g.i("VZEROUPPER")
	g.i("RET")
}

// addRows writes addRowsavx512(dst *float32, ldd uintptr, src *float32, lds uintptr, rows,
// width int): dst[r][0:width] += src[r][0:width] for each row; strides in bytes. It is
// col2im's inner loop for stride-1 convolutions.
func (g *gen) addRows() {
	g.f("// func addRowsavx512(dst *float32, ldd uintptr, src *float32, lds uintptr, rows, width int)")
	g.f("TEXT ·addRowsavx512(SB), NOSPLIT, $0-48")
	g.i("MOVQ dst+0(FP), DI")
	g.i("MOVQ ldd+8(FP), R10")
	g.i("MOVQ src+16(FP), SI")
	g.i("MOVQ lds+24(FP), R11")
	g.i("MOVQ rows+32(FP), DX")
	g.i("MOVQ width+40(FP), R13")
	g.tailMask("R13", "K3")
	g.i("TESTQ DX, DX")
	g.i("JEQ addone")
	g.f("adrow:")
	g.i("MOVQ DI, R8")
	g.i("MOVQ SI, R9")
	g.i("MOVQ R13, CX")
	g.f("adloop:")
	g.i("CMPQ CX, $16")
	g.i("JLT adtail")
	g.i("VMOVUPS (R8), Z1")
	g.i("VADDPS (R9), Z1, Z1")
	g.i("VMOVUPS Z1, (R8)")
	g.i("ADDQ $64, R8")
	g.i("ADDQ $64, R9")
	g.i("SUBQ $16, CX")
	g.i("JMP adloop")
	g.f("adtail:")
	g.i("TESTQ CX, CX")
	g.i("JEQ adnext")
	g.i("VMOVUPS.Z (R8), K3, Z1")
	g.i("VMOVUPS.Z (R9), K3, Z2")
	g.i("VADDPS Z2, Z1, Z1")
	g.i("VMOVUPS Z1, K3, (R8)")
	g.f("adnext:")
	g.i("ADDQ R10, DI")
	g.i("ADDQ R11, SI")
	g.i("DECQ DX")
	g.i("JNE adrow")
	g.f("addone:")
	g.i("VZEROUPPER")
	g.i("RET")
}

// maxPool2x2 writes maxPool2x2avx512(x *float32, w int, y *float32, arg *int32, oh, ow int,
// base, sentinel int32, relu int): 2×2 max pooling with stride 2 of one oh·2 × w plane, 16
// outputs at a time, without branches on the data. y gets the maxima; arg the index
// (base + offset in the plane) of the first maximum in row-major order. NaNs win, as in
// PyTorch. With relu ≠ 0, outputs that are not > 0 become 0 with arg = sentinel.
func (g *gen) maxPool2x2() {
	g.f("DATA poolEven<>+0(SB)/4, $0")
	for i := 1; i < 16; i++ {
		g.f("DATA poolEven<>+%d(SB)/4, $%d", 4*i, 2*i)
	}
	g.f("GLOBL poolEven<>(SB), RODATA|NOPTR, $64")
	for i := range 16 {
		g.f("DATA poolOdd<>+%d(SB)/4, $%d", 4*i, 2*i+1)
	}
	g.f("GLOBL poolOdd<>(SB), RODATA|NOPTR, $64")
	g.f("")
	g.f("// func maxPool2x2avx512(x *float32, w int, y *float32, arg *int32, oh, ow int, base, sentinel int32, relu int)")
	g.f("TEXT ·maxPool2x2avx512(SB), NOSPLIT, $0-64")
	g.i("MOVQ x+0(FP), SI")
	g.i("MOVQ w+8(FP), R8")
	g.i("MOVQ y+16(FP), DI")
	g.i("MOVQ arg+24(FP), DX")
	g.i("MOVQ oh+32(FP), R9")
	g.i("MOVL base+48(FP), R10")
	g.i("VMOVDQU32 poolEven<>(SB), Z30")
	g.i("VMOVDQU32 poolOdd<>(SB), Z31")
	g.i("VXORPS Z29, Z29, Z29")
	g.i("VPBROADCASTD R8, Z28") // w
	g.i("MOVL sentinel+52(FP), AX")
	g.i("VPBROADCASTD AX, Z27")
	g.i("MOVL $1, AX")
	g.i("VPBROADCASTD AX, Z26")
	g.i("TESTQ R9, R9")
	g.i("JEQ mpdone")
	g.f("mprow:")
	g.i("MOVQ SI, R11")
	g.i("LEAQ (SI)(R8*4), R12")
	g.i("MOVQ DI, R13")
	g.i("MOVQ DX, R14")
	g.i("MOVQ ow+40(FP), R15")
	g.i("MOVL R10, BX")
	g.f("mpchunk:")
	// K1: outputs of this chunk; K2, K3: the 2·count inputs of each row.
	g.i("MOVQ R15, CX")
	g.i("CMPQ CX, $16")
	g.i("JLE mpcount")
	g.i("MOVQ $16, CX")
	g.f("mpcount:")
	g.i("MOVQ $1, AX")
	g.i("SHLQ CX, AX")
	g.i("DECQ AX")
	g.i("KMOVW AX, K1")
	g.i("SHLQ $1, CX")
	g.i("MOVQ $1, AX")
	g.i("SHLQ CX, AX")
	g.i("DECQ AX")
	g.i("KMOVW AX, K2")
	g.i("SHRQ $16, AX")
	g.i("KMOVW AX, K3")
	g.i("VMOVUPS.Z (R11), K2, Z0")
	g.i("VMOVUPS.Z 64(R11), K3, Z1")
	g.i("VMOVUPS.Z (R12), K2, Z2")
	g.i("VMOVUPS.Z 64(R12), K3, Z3")
	// a, b, c, d = even and odd lanes of the two rows.
	g.i("VMOVDQA32 Z30, Z4")
	g.i("VPERMI2PS Z1, Z0, Z4")
	g.i("VMOVDQA32 Z31, Z5")
	g.i("VPERMI2PS Z1, Z0, Z5")
	g.i("VMOVDQA32 Z30, Z6")
	g.i("VPERMI2PS Z3, Z2, Z6")
	g.i("VMOVDQA32 Z31, Z7")
	g.i("VPERMI2PS Z3, Z2, Z7")
	// Positions: a at base+2·ox, b = a+1, c = a+w, d = a+w+1.
	g.i("VPBROADCASTD BX, Z10")
	g.i("VPADDD Z30, Z10, Z10")
	g.i("VMOVDQA32 Z10, Z8")
	g.i("VPADDD Z26, Z10, Z9")
	g.i("VPADDD Z28, Z10, Z11")
	g.i("VPADDD Z26, Z11, Z12")
	for _, vp := range [][2]string{{"Z5", "Z9"}, {"Z6", "Z11"}, {"Z7", "Z12"}} {
		v, pos := vp[0], vp[1]
		g.i("VCMPPS $0x1e, Z4, %s, K4", v)    // v > best
		g.i("VCMPPS $0x03, %s, %s, K5", v, v) // v is NaN
		g.i("VCMPPS $0x07, Z4, Z4, K6")       // best is not NaN
		g.i("KANDW K5, K6, K5")
		g.i("KORW K5, K4, K4")
		g.i("VMOVAPS %s, K4, Z4", v)
		g.i("VMOVDQA32 %s, K4, Z8", pos)
	}
	g.i("CMPQ relu+56(FP), $0")
	g.i("JEQ mpstore")
	g.i("VCMPPS $0x1e, Z29, Z4, K4") // best > 0
	g.i("VCMPPS $0x07, Z4, Z4, K5")  // best is not NaN
	g.i("KANDNW K5, K4, K6")         // not NaN and not > 0
	g.i("VMOVAPS Z29, K6, Z4")
	g.i("VMOVDQA32 Z27, K6, Z8")
	g.f("mpstore:")
	g.i("VMOVUPS Z4, K1, (R13)")
	g.i("VMOVDQU32 Z8, K1, (R14)")
	g.i("ADDQ $128, R11")
	g.i("ADDQ $128, R12")
	g.i("ADDQ $64, R13")
	g.i("ADDQ $64, R14")
	g.i("ADDL $32, BX")
	g.i("SUBQ $16, R15")
	g.i("JGT mpchunk")
	g.i("LEAQ (SI)(R8*8), SI")
	g.i("MOVQ ow+40(FP), AX")
	g.i("LEAQ (DI)(AX*4), DI")
	g.i("LEAQ (DX)(AX*4), DX")
	g.i("LEAL (R10)(R8*2), R10")
	g.i("DECQ R9")
	g.i("JNE mprow")
	g.f("mpdone:")
	g.i("VZEROUPPER")
	g.i("RET")
}

// im2col writes im2colavx512(x, col *float32, c, plane, p, ow4, w4 int, tab *int64, ntab int):
// for each of c channels (input planes plane floats apart) and each of the ntab table
// entries {dstOff, srcOff, rows, width} (floats), it zeroes the next p floats of col and
// copies rows runs of width floats from x+srcOff (row stride w4 bytes) to col+dstOff (row
// stride ow4 bytes). The table, one entry per kernel offset (ky, kx), is made by Im2col.
func (g *gen) im2col() {
	g.f("// func im2colavx512(x, col *float32, c, plane, p, ow4, w4 int, tab *int64, ntab int)")
	g.f("TEXT ·im2colavx512(SB), NOSPLIT, $16-72")
	g.i("MOVQ x+0(FP), SI")
	g.i("MOVQ col+8(FP), DI")
	g.i("MOVQ c+16(FP), R10")
	g.i("TESTQ R10, R10")
	g.i("JEQ icdone")
	g.i("MOVQ R10, cleft-8(SP)")
	g.i("MOVQ p+32(FP), R11")
	g.i("MOVQ ow4+40(FP), R12")
	g.i("MOVQ w4+48(FP), R13")
	g.i("VXORPS Z0, Z0, Z0")
	g.tailMask("R11", "K2")
	g.f("icchan:")
	g.i("MOVQ tab+56(FP), AX")
	g.i("MOVQ ntab+64(FP), R10")
	g.i("MOVQ R10, eleft-16(SP)")
	g.f("icentry:")
	g.i("MOVQ DI, DX")
	g.i("MOVQ R11, CX")
	g.i("SHRQ $4, CX")
	g.f("iczero:")
	g.i("TESTQ CX, CX")
	g.i("JEQ iczerotail")
	g.i("VMOVUPS Z0, (DX)")
	g.i("ADDQ $64, DX")
	g.i("DECQ CX")
	g.i("JMP iczero")
	g.f("iczerotail:")
	g.i("VMOVUPS Z0, K2, (DX)")
	g.i("MOVQ 16(AX), R14")
	g.i("TESTQ R14, R14")
	g.i("JEQ icnext")
	g.i("MOVQ 24(AX), BX")
	g.i("TESTQ BX, BX")
	g.i("JEQ icnext")
	g.tailMaskTmp("BX", "K3", "R10")
	g.i("SHRQ $4, BX")
	g.i("MOVQ 0(AX), R15")
	g.i("LEAQ (DI)(R15*4), R15")
	g.i("MOVQ 8(AX), R8")
	g.i("LEAQ (SI)(R8*4), R8")
	g.f("icrow:")
	g.i("MOVQ R15, DX")
	g.i("MOVQ R8, R9")
	g.i("MOVQ BX, CX")
	g.f("iccopy:")
	g.i("TESTQ CX, CX")
	g.i("JEQ iccopytail")
	g.i("VMOVUPS (R9), Z1")
	g.i("VMOVUPS Z1, (DX)")
	g.i("ADDQ $64, DX")
	g.i("ADDQ $64, R9")
	g.i("DECQ CX")
	g.i("JMP iccopy")
	g.f("iccopytail:")
	g.i("VMOVUPS.Z (R9), K3, Z1")
	g.i("VMOVUPS Z1, K3, (DX)")
	g.i("ADDQ R12, R15")
	g.i("ADDQ R13, R8")
	g.i("DECQ R14")
	g.i("JNE icrow")
	g.f("icnext:")
	g.i("LEAQ (DI)(R11*4), DI")
	g.i("ADDQ $32, AX")
	g.i("DECQ eleft-16(SP)")
	g.i("JNE icentry")
	g.i("MOVQ plane+24(FP), R10")
	g.i("LEAQ (SI)(R10*4), SI")
	g.i("DECQ cleft-8(SP)")
	g.i("JNE icchan")
	g.f("icdone:")
	g.i("VZEROUPPER")
	g.i("RET")
}

// relu writes reluavx512(n int, x, y *float32): y = max(x, 0), NaN kept; and
// reluGradavx512(n int, y, dy, dx *float32): dx = dy where y > 0, else 0. n is any count.
func (g *gen) relu() {
	for _, grad := range []bool{false, true} {
		name, frame, sig := "reluavx512", "$0-24", "(n int, x, y *float32)"
		if grad {
			name, frame, sig = "reluGradavx512", "$0-32", "(n int, y, dy, dx *float32)"
		}
		g.f("// func %s%s", name, sig)
		g.f("TEXT ·%s(SB), NOSPLIT, %s", name, frame)
		g.i("MOVQ n+0(FP), BX")
		if grad {
			g.i("MOVQ y+8(FP), SI")
			g.i("MOVQ dy+16(FP), R8")
			g.i("MOVQ dx+24(FP), DI")
		} else {
			g.i("MOVQ x+8(FP), SI")
			g.i("MOVQ y+16(FP), DI")
		}
		g.i("VXORPS Z0, Z0, Z0")
		g.tailMask("BX", "K2")
		g.i("SHRQ $4, BX")
		g.f("%sloop:", name)
		g.i("TESTQ BX, BX")
		g.i("JEQ %stail", name)
		if grad {
			g.i("VMOVUPS (SI), Z1")
			g.i("VCMPPS $0x1e, Z0, Z1, K1")
			g.i("VMOVUPS.Z (R8), K1, Z2")
			g.i("VMOVUPS Z2, (DI)")
			g.i("ADDQ $64, R8")
		} else {
			g.i("VMOVUPS (SI), Z1")
			g.i("VMAXPS Z1, Z0, Z2")
			g.i("VMOVUPS Z2, (DI)")
		}
		g.i("ADDQ $64, SI")
		g.i("ADDQ $64, DI")
		g.i("DECQ BX")
		g.i("JMP %sloop", name)
		g.f("%stail:", name)
		if grad {
			g.i("VMOVUPS.Z (SI), K2, Z1")
			g.i("VCMPPS $0x1e, Z0, Z1, K1")
			g.i("KANDW K1, K2, K1")
			g.i("VMOVUPS.Z (R8), K1, Z2")
			g.i("VMOVUPS Z2, K2, (DI)")
		} else {
			g.i("VMOVUPS.Z (SI), K2, Z1")
			g.i("VMAXPS Z1, Z0, Z2")
			g.i("VMOVUPS Z2, K2, (DI)")
		}
		g.i("VZEROUPPER")
		g.i("RET")
		g.f("")
	}
}

// maxPool2x2Back writes maxPool2x2Backavx512(dy *float32, arg *int32, dx *float32, w int,
// oh, ow int, base int32): the gradient of MaxPool2x2 for one plane, written (not added)
// window by window: each of the four inputs of a window gets dy if it was the window's
// argmax (arg = base + its offset) and 0 otherwise. Inputs outside every window (an odd
// last row or column) are not written.
func (g *gen) maxPool2x2Back() {
	g.f("DATA poolLo<>+0(SB)/4, $0")
	for i := 1; i < 16; i++ {
		g.f("DATA poolLo<>+%d(SB)/4, $%d", 4*i, i/2+16*(i%2))
	}
	g.f("GLOBL poolLo<>(SB), RODATA|NOPTR, $64")
	for i := range 16 {
		g.f("DATA poolHi<>+%d(SB)/4, $%d", 4*i, 8+i/2+16*(i%2))
	}
	g.f("GLOBL poolHi<>(SB), RODATA|NOPTR, $64")
	g.f("")
	g.f("// func maxPool2x2Backavx512(dy *float32, arg *int32, dx *float32, w int, oh, ow int, base int32)")
	g.f("TEXT ·maxPool2x2Backavx512(SB), NOSPLIT, $0-52")
	g.i("MOVQ dy+0(FP), SI")
	g.i("MOVQ arg+8(FP), DX")
	g.i("MOVQ dx+16(FP), DI")
	g.i("MOVQ w+24(FP), R8")
	g.i("MOVQ oh+32(FP), R9")
	g.i("MOVL base+48(FP), R10")
	g.i("VMOVDQU32 poolEven<>(SB), Z30")
	g.i("VMOVDQU32 poolLo<>(SB), Z25")
	g.i("VMOVDQU32 poolHi<>(SB), Z24")
	g.i("VPBROADCASTD R8, Z28")
	g.i("MOVL $1, AX")
	g.i("VPBROADCASTD AX, Z26")
	g.i("TESTQ R9, R9")
	g.i("JEQ mbdone")
	g.f("mbrow:")
	g.i("MOVQ DI, R11")
	g.i("LEAQ (DI)(R8*4), R12")
	g.i("MOVQ SI, R13")
	g.i("MOVQ DX, R14")
	g.i("MOVQ ow+40(FP), R15")
	g.i("MOVL R10, BX")
	g.f("mbchunk:")
	g.i("MOVQ R15, CX")
	g.i("CMPQ CX, $16")
	g.i("JLE mbcount")
	g.i("MOVQ $16, CX")
	g.f("mbcount:")
	g.i("MOVQ $1, AX")
	g.i("SHLQ CX, AX")
	g.i("DECQ AX")
	g.i("KMOVW AX, K1")
	g.i("SHLQ $1, CX")
	g.i("MOVQ $1, AX")
	g.i("SHLQ CX, AX")
	g.i("DECQ AX")
	g.i("KMOVW AX, K2")
	g.i("SHRQ $16, AX")
	g.i("KMOVW AX, K3")
	g.i("VMOVUPS.Z (R13), K1, Z0")   // dy
	g.i("VMOVDQU32.Z (R14), K1, Z1") // arg
	g.i("VPBROADCASTD BX, Z10")
	g.i("VPADDD Z30, Z10, Z10") // posA
	g.i("VPADDD Z26, Z10, Z9")  // posB
	g.i("VPADDD Z28, Z10, Z11") // posC
	g.i("VPADDD Z26, Z11, Z12") // posD
	for _, v := range [][2]string{{"Z10", "Z4"}, {"Z9", "Z5"}, {"Z11", "Z6"}, {"Z12", "Z7"}} {
		g.i("VPCMPEQD %s, Z1, K4", v[0])
		g.i("VMOVUPS.Z Z0, K4, %s", v[1])
	}
	// Interleave a,b into the first input row and c,d into the second.
	for _, r := range [][3]string{{"Z4", "Z5", "R11"}, {"Z6", "Z7", "R12"}} {
		g.i("VMOVDQA32 Z25, Z2")
		g.i("VPERMI2PS %s, %s, Z2", r[1], r[0])
		g.i("VMOVDQA32 Z24, Z3")
		g.i("VPERMI2PS %s, %s, Z3", r[1], r[0])
		g.i("VMOVUPS Z2, K2, (%s)", r[2])
		g.i("VMOVUPS Z3, K3, 64(%s)", r[2])
	}
	g.i("ADDQ $128, R11")
	g.i("ADDQ $128, R12")
	g.i("ADDQ $64, R13")
	g.i("ADDQ $64, R14")
	g.i("ADDL $32, BX")
	g.i("SUBQ $16, R15")
	g.i("JGT mbchunk")
	g.i("LEAQ (DI)(R8*8), DI")
	g.i("MOVQ ow+40(FP), AX")
	g.i("LEAQ (SI)(AX*4), SI")
	g.i("LEAQ (DX)(AX*4), DX")
	g.i("LEAL (R10)(R8*2), R10")
	g.i("DECQ R9")
	g.i("JNE mbrow")
	g.f("mbdone:")
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
	// AVX-512, narrow: 24×16 tile (one zmm per row), for products with a short side of
	// about 16 (a batch of 10, say) where 32-wide panels would waste half their lanes.
	g.kernel("kern24x16avx512", 24, 1, "Z", 64, 8, []string{"Z1", "Z2", "Z3", "Z4", "Z5", "Z6", "Z7"}, 2, true)
	g.f("")
	// AVX-512, flat: 2×64 tile, for products with one or two rows (a single image's
	// inference): the taller tiles would compute mostly padding.
	g.kernel("kern2x64avx512", 2, 4, "Z", 64, 8, []string{"Z4", "Z5"}, 2, true)
	g.f("")
	g.transpose16(false)
	g.f("")
	g.transpose16(true)
	g.f("")
	g.axpy()
	g.f("")
	// AVX2: 6×16 tile, 12 ymm accumulators Y4..Y15, B in Y0, Y1, broadcasts Y2, Y3.
	g.kernel("kern6x16avx2", 6, 2, "Y", 32, 4, []string{"Y2", "Y3"}, 2, false)
	g.f("")
	g.peak("peakavx512", "Z", 24)
	g.f("")
	g.peak("peakavx2", "Y", 12)
	g.f("")
	g.copyRows()
	g.f("")
	g.addRows()
	g.f("")
	g.maxPool2x2()
	g.f("")
	g.maxPool2x2Back()
	g.f("")
	g.im2col()
	g.f("")
	g.relu()
	src := strings.TrimRight(g.b.String(), "\n") + "\n"
	if err := os.WriteFile(*out, []byte(src), 0o644); err != nil {
		log.Fatal(err)
	}
}
