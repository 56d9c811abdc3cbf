package protocol

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// uvarintLen returns how many bytes binary.AppendUvarint writes for x.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// reader walks a payload field by field. The first error sticks: later reads
// return zero values, so a decoder reads every field and checks err once.
type reader struct {
	b   []byte
	err error
}

// uvarint reads one minimal unsigned LEB128 varint.
func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	switch {
	case n == 0:
		r.err = fmt.Errorf("%w: field missing", ErrMalformed)
		return 0
	case n < 0:
		r.err = fmt.Errorf("%w: varint overflows", ErrMalformed)
		return 0
	case n > 1 && r.b[n-1] == 0:
		r.err = fmt.Errorf("%w: non-minimal varint", ErrMalformed)
		return 0
	}
	r.b = r.b[n:]
	return x
}

// id reads a varint that must not be zero (user, group, message ids, seqs).
func (r *reader) id(what string) uint64 {
	x := r.uvarint()
	if x == 0 && r.err == nil {
		r.err = fmt.Errorf("%w: zero %s", ErrMalformed, what)
	}
	return x
}

// u32 reads a varint that must fit 32 bits.
func (r *reader) u32() uint32 {
	x := r.uvarint()
	if x > 1<<32-1 && r.err == nil {
		r.err = fmt.Errorf("%w: field over 32 bits", ErrMalformed)
	}
	return uint32(x)
}

// id32 reads a varint that must be neither zero nor over 32 bits (times).
func (r *reader) id32(what string) uint32 {
	x := r.id(what)
	if x > 1<<32-1 && r.err == nil {
		r.err = fmt.Errorf("%w: %s over 32 bits", ErrMalformed, what)
	}
	return uint32(x)
}

// code reads a varint error code, which must fit 16 bits: a wider value would
// be cut by the conversion and re-encode differently.
func (r *reader) code() Code {
	x := r.uvarint()
	if x > 1<<16-1 && r.err == nil {
		r.err = fmt.Errorf("%w: code over 16 bits", ErrMalformed)
	}
	return Code(x)
}

// byte1 reads one raw byte.
func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: field missing", ErrMalformed)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes reads a varint length and that many bytes, at most max.
func (r *reader) bytes(max int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: byte field of %d bytes", ErrMalformed, n)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// rest returns every remaining byte.
func (r *reader) rest() []byte {
	v := r.b
	r.b = r.b[len(r.b):]
	return v
}

// more reports whether bytes remain (for optional trailing fields).
func (r *reader) more() bool { return r.err == nil && len(r.b) > 0 }

// end returns the first error, or ErrMalformed if bytes remain.
func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	return r.err
}

// errCompressed is returned by the Decode methods of types that may be
// compressed when handed a frame still carrying FlagCompressed: the payload
// is a compressed block and must be inflated first.
var errCompressed = wrapMalformed("compressed payload: inflate before decoding")

// wrapMalformed returns ErrMalformed with a fixed detail, built once.
func wrapMalformed(detail string) error { return fmt.Errorf("%w: %s", ErrMalformed, detail) }
