//go:build wasip1

// Canonical-ABI glue shared by every world, written by hand (each world's own part is
// in world_*_wasip1.go).
//
// Two rules keep it alive under the Go runtime (see the package README):
//  1. cabi_realloc never allocates on the Go heap: a heap allocation may start a GC
//     cycle, which reads the clock through an import, and a component may not call an
//     import from inside cabi_realloc. It hands out memory from an arena of sbrk'd
//     chunks instead, reset at the start of each export (after the export has copied
//     its arguments out).
//  2. Before package init has run (the WASI adapter allocates its state during
//     _initialize), memory comes straight from runtime.sbrk and is never reused.

package bosun

import (
	"strings"
	"unsafe"
)

//go:linkname sbrk runtime.sbrk
func sbrk(n uintptr) unsafe.Pointer

var initialized bool

func init() { initialized = true }

type chunk struct{ base, size uintptr }

// The arena: chunks from sbrk, reused after each reset. A fixed array so that the arena
// itself never touches the Go heap.
var (
	chunks  [256]chunk
	nchunks int
	current int
	offset  uintptr
)

const minChunk = 1 << 20

func alignUp(p, align uintptr) uintptr {
	if align == 0 {
		align = 1
	}
	return (p + align - 1) &^ (align - 1)
}

func arenaAlloc(size, align uintptr) uintptr {
	if !initialized {
		p := uintptr(sbrk(size + align))
		if p == 0 {
			return 0
		}
		return alignUp(p, align)
	}
	for current < nchunks {
		c := &chunks[current]
		p := alignUp(c.base+offset, align)
		if p+size <= c.base+c.size {
			offset = p + size - c.base
			return p
		}
		current++
		offset = 0
	}
	n := size + align
	if n < minChunk {
		n = minChunk
	}
	base := uintptr(sbrk(n))
	if base == 0 {
		return 0
	}
	if nchunks == len(chunks) {
		// Out of chunk slots: this block is simply never reused.
		return alignUp(base, align)
	}
	chunks[nchunks] = chunk{base: base, size: n}
	current = nchunks
	nchunks++
	p := alignUp(base, align)
	offset = p + size - base
	return p
}

func arenaReset() {
	current = 0
	offset = 0
}

//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, newSize uint32) uint32 {
	p := arenaAlloc(uintptr(newSize), uintptr(align))
	if old != 0 && oldSize != 0 && p != 0 {
		n := oldSize
		if newSize < n {
			n = newSize
		}
		copyBytes(p, uintptr(old), uintptr(n))
	}
	return uint32(p)
}

func copyBytes(dst, src, n uintptr) {
	if n == 0 {
		return
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(dst)), n), unsafe.Slice((*byte)(unsafe.Pointer(src)), n))
}

// --- memory helpers -------------------------------------------------------------------

func load8(p uint32) uint8     { return *(*uint8)(unsafe.Pointer(uintptr(p))) }
func load16(p uint32) uint16   { return *(*uint16)(unsafe.Pointer(uintptr(p))) }
func load32(p uint32) uint32   { return *(*uint32)(unsafe.Pointer(uintptr(p))) }
func load64(p uint32) uint64   { return *(*uint64)(unsafe.Pointer(uintptr(p))) }
func store8(p uint32, v uint8) { *(*uint8)(unsafe.Pointer(uintptr(p))) = v }
func store32(p uint32, v uint32) {
	*(*uint32)(unsafe.Pointer(uintptr(p))) = v
}
func store64(p uint32, v uint64) {
	*(*uint64)(unsafe.Pointer(uintptr(p))) = v
}

// liftString copies guest memory into a Go string.
func liftString(p, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n))
}

func liftBytes(p, n uint32) []byte {
	out := make([]byte, n)
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n))
	}
	return out
}

// strArg passes a Go string to an import (the caller keeps s alive).
func strArg(s string) (uint32, uint32) {
	if len(s) == 0 {
		return 0, 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))), uint32(len(s))
}

func bytesArg(b []byte) (uint32, uint32) {
	if len(b) == 0 {
		return 0, 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))), uint32(len(b))
}

func optStrArg(s string) (uint32, uint32, uint32) {
	if s == "" {
		return 0, 0, 0
	}
	p, n := strArg(s)
	return 1, p, n
}

// arenaString copies s into the arena (for export results, read by the host after return).
func arenaString(s string) (uint32, uint32) {
	if len(s) == 0 {
		return 1, 0
	}
	p := arenaAlloc(uintptr(len(s)), 1)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(p)), len(s)), s)
	return uint32(p), uint32(len(s))
}

// retArea receives an import's results (at most 40 bytes, pod-info; 8-aligned).
// Package data, not Go heap.
var retArea [6]uint64

func ret() uint32 { return uint32(uintptr(unsafe.Pointer(&retArea))) }

// --- imports --------------------------------------------------------------------------

//go:wasmimport bosun:operator/cache@0.1.0 get
func importGet(avP, avN, kP, kN, nsD, nsP, nsN, nP, nN, ret uint32)

//go:wasmimport bosun:operator/cache@0.1.0 get-fields
func importGetFields(avP, avN, kP, kN, nsD, nsP, nsN, nP, nN, lP, lN, ret uint32)

//go:wasmimport bosun:operator/cache@0.1.0 list-objects
func importList(avP, avN, kP, kN, nsD, nsP, nsN, selD, selP, selN, ret uint32)

//go:wasmimport bosun:operator/cache@0.1.0 state-get
func importStateGet(kP, kN, ret uint32)

//go:wasmimport bosun:operator/cache@0.1.0 state-set
func importStateSet(kP, kN, vP, vN, ret uint32)

//go:wasmimport bosun:operator/cache@0.1.0 state-delete
func importStateDelete(kP, kN uint32)

//go:wasmimport bosun:operator/log@0.1.0 log
func importLog(level, p, n uint32)

//go:wasmimport bosun:operator/clock@0.1.0 now-ms
func importNowMs() uint64

//go:wasmimport bosun:operator/clock@0.1.0 now-rfc3339
func importNowRFC3339(ret uint32)

type flatRef [9]uint32

func flattenRef(r *ObjectRef) flatRef {
	var f flatRef
	f[0], f[1] = strArg(r.APIVersion)
	f[2], f[3] = strArg(r.Kind)
	f[4], f[5], f[6] = optStrArg(r.Namespace)
	f[7], f[8] = strArg(r.Name)
	return f
}

func hostGet(target ObjectRef) (string, bool) {
	f := flattenRef(&target)
	r := ret()
	importGet(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], r)
	keepAlive(&target)
	if load8(r) == 0 {
		return "", false
	}
	return liftString(load32(r+4), load32(r+8)), true
}

func hostGetFields(target ObjectRef, fields []string) (string, bool, error) {
	f := flattenRef(&target)
	list := strings.Join(fields, ",")
	lP, lN := strArg(list)
	r := ret()
	importGetFields(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], lP, lN, r)
	keepAlive(&target, &list)
	if load8(r) != 0 {
		return "", false, hostError(liftString(load32(r+4), load32(r+8)))
	}
	if load8(r+4) == 0 {
		return "", false, nil
	}
	return liftString(load32(r+8), load32(r+12)), true, nil
}

func hostList(apiVersion, kind, namespace, selector string) ([]string, error) {
	avP, avN := strArg(apiVersion)
	kP, kN := strArg(kind)
	nsD, nsP, nsN := optStrArg(namespace)
	sD, sP, sN := optStrArg(selector)
	r := ret()
	importList(avP, avN, kP, kN, nsD, nsP, nsN, sD, sP, sN, r)
	keepAlive(&apiVersion, &kind, &namespace, &selector)
	p, n := load32(r+4), load32(r+8)
	if load8(r) != 0 {
		return nil, hostError(liftString(p, n))
	}
	out := make([]string, n)
	for i := uint32(0); i < n; i++ {
		e := p + i*8
		out[i] = liftString(load32(e), load32(e+4))
	}
	return out, nil
}

type hostError string

func (e hostError) Error() string { return string(e) }

func hostStateGet(key string) ([]byte, bool) {
	kP, kN := strArg(key)
	r := ret()
	importStateGet(kP, kN, r)
	keepAlive(&key)
	if load8(r) == 0 {
		return nil, false
	}
	return liftBytes(load32(r+4), load32(r+8)), true
}

func hostStateSet(key string, value []byte) string {
	kP, kN := strArg(key)
	vP, vN := bytesArg(value)
	r := ret()
	importStateSet(kP, kN, vP, vN, r)
	keepAlive(&key, &value)
	if load8(r) == 0 {
		return ""
	}
	msg := liftString(load32(r+4), load32(r+8))
	if msg == "" {
		msg = "refused"
	}
	return msg
}

func hostStateDelete(key string) {
	kP, kN := strArg(key)
	importStateDelete(kP, kN)
	keepAlive(&key)
}

func hostLog(level Level, msg string) {
	p, n := strArg(msg)
	importLog(uint32(level), p, n)
	keepAlive(&msg)
}

func hostNowMs() uint64 { return importNowMs() }

func hostNowRFC3339() string {
	r := ret()
	importNowRFC3339(r)
	return liftString(load32(r), load32(r+4))
}

// keepAlive keeps the Go memory handed to an import reachable until it returns.
//
//go:noinline
func keepAlive(v ...any) {
	for _, x := range v {
		sink = x
	}
	sink = nil
}

var sink any

// --- exports --------------------------------------------------------------------------

//go:wasmexport metadata
func exportMetadata() uint32 {
	arenaReset()
	var m Metadata
	if metadataOf != nil {
		m = metadataOf()
	}
	out := uint32(arenaAlloc(40, 4))
	putString := func(at uint32, s string) {
		p, n := arenaString(s)
		store32(at, p)
		store32(at+4, n)
	}
	putOpt := func(at uint32, s string) {
		if s == "" {
			store8(at, 0)
			return
		}
		store8(at, 1)
		putString(at+4, s)
	}
	putString(out, m.Name)
	putString(out+8, m.Version)
	putString(out+16, m.Desc)
	subs := uint32(arenaAlloc(uintptr(40*len(m.Subscriptions))+1, 4))
	for i, s := range m.Subscriptions {
		e := subs + uint32(i)*40
		putString(e, s.APIVersion)
		putString(e+8, s.Kind)
		putOpt(e+16, s.Namespace)
		putOpt(e+28, s.LabelSelector)
	}
	store32(out+24, subs)
	store32(out+28, uint32(len(m.Subscriptions)))
	perms := uint32(arenaAlloc(uintptr(24*len(m.Permissions))+1, 4))
	for i, p := range m.Permissions {
		e := perms + uint32(i)*24
		putString(e, p.APIVersion)
		putString(e+8, p.Kind)
		verbs := uint32(arenaAlloc(uintptr(len(p.Verbs))+1, 1))
		for j, v := range p.Verbs {
			store8(verbs+uint32(j), uint8(v))
		}
		store32(e+16, verbs)
		store32(e+20, uint32(len(p.Verbs)))
	}
	store32(out+32, perms)
	store32(out+36, uint32(len(m.Permissions)))
	return out
}

//go:wasmexport init
func exportInit(p, n uint32) uint32 {
	config := liftString(p, n)
	arenaReset()
	err := initExport(config)
	out := uint32(arenaAlloc(12, 4))
	if err == nil {
		store8(out, 0)
		return out
	}
	store8(out, 1)
	ep, en := arenaString(err.Error())
	store32(out+4, ep)
	store32(out+8, en)
	return out
}
