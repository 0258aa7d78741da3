//go:build libdeflate && cgo

package bench

import (
	"bytes"
	"io"
	"sync"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/libdeflate"
)

// libdeflate decodes a whole file at once (and checks its CRC-32 and
// size, as klauspost does): the compressed bytes are read
// into memory, then decoded into a buffer the size the gzip trailer
// states, with no window to copy out of. Buffers and decompressors are
// reused from file to file, as the floor's readers reuse theirs.
type wholeFile struct {
	d       *libdeflate.Decompressor
	in, out []byte
	text    []byte
	back    bool // given back to the pool
}

// giveBack returns f to the pool once, however its text was read.
func (f *wholeFile) giveBack() {
	if !f.back {
		f.back = true
		wholeFiles.Put(f)
	}
}

var wholeFiles = sync.Pool{New: func() any { return &wholeFile{d: libdeflate.New()} }}

func init() {
	inflaters = append(inflaters, inflater{"libdeflate", func(r io.Reader) (io.Reader, error) {
		f := wholeFiles.Get().(*wholeFile)
		f.back = false
		buf := bytes.NewBuffer(f.in[:0])
		if _, err := buf.ReadFrom(r); err != nil {
			f.giveBack()
			return nil, err
		}
		f.in = buf.Bytes()
		text, err := f.d.Gunzip(f.out, f.in)
		if err != nil {
			f.giveBack()
			return nil, err
		}
		f.out, f.text = text, text
		return f, nil
	}})
}

func (f *wholeFile) Read(p []byte) (int, error) {
	if len(f.text) == 0 {
		f.giveBack()
		return 0, io.EOF
	}
	n := copy(p, f.text)
	f.text = f.text[n:]
	return n, nil
}

// WriteTo hands the text over whole, as klauspost's reader hands over
// its window, and gives the buffers back.
func (f *wholeFile) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(f.text)
	f.text = nil
	f.giveBack()
	return int64(n), err
}
