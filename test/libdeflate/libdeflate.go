//go:build libdeflate && cgo

// Package libdeflate decodes whole gzip files with Debian's libdeflate,
// through cgo, for the benchmarks only: it is the fastest inflate on this
// machine, and the scan does not use it (the command is a static, pure-Go
// binary, and libdeflate cannot stream nor give the text before damage).
// make bench installs libdeflate-dev and builds with -tags libdeflate.
package libdeflate

/*
#cgo LDFLAGS: -ldeflate
#include <libdeflate.h>
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Decompressor is one libdeflate decompressor; it is not safe for use by
// more than one goroutine at once. The benchmarks keep theirs for the
// process's life, so it has no Close.
type Decompressor struct {
	d *C.struct_libdeflate_decompressor
}

// New allocates a decompressor; without the memory for one a benchmark
// cannot go on, so it panics rather than crash in C on a NULL later.
func New() *Decompressor {
	d := C.libdeflate_alloc_decompressor()
	if d == nil {
		panic("libdeflate: no memory for a decompressor")
	}
	return &Decompressor{d}
}

// Gunzip decodes src, one gzip member, into dst's storage (grown to the
// size the member's trailer states) and returns the text.
func (d *Decompressor) Gunzip(dst, src []byte) ([]byte, error) {
	if len(src) < 18 {
		return nil, errors.New("libdeflate: not a gzip member")
	}
	n := int(binary.LittleEndian.Uint32(src[len(src)-4:]))
	if cap(dst) < n+1 {
		dst = make([]byte, n+1)
	}
	dst = dst[:n+1] // one byte more, so that &dst[0] exists for an empty text
	var got C.size_t
	if r := C.libdeflate_gzip_decompress(d.d, unsafe.Pointer(&src[0]), C.size_t(len(src)), unsafe.Pointer(&dst[0]), C.size_t(len(dst)), &got); r != C.LIBDEFLATE_SUCCESS {
		return nil, fmt.Errorf("libdeflate: result %d", int(r))
	}
	if int(got) != n {
		return nil, fmt.Errorf("libdeflate: %d bytes, the trailer says %d", int(got), n)
	}
	return dst[:n], nil
}
