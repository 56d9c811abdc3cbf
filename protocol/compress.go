package protocol

// Compression of single frames with a shared, trained dictionary.
//
// # Negotiation
//
// LOGIN.Dict names the dictionary the client holds (0: none). The server
// answers WELCOME.Dict = the same id if it has that dictionary, else 0. With 0,
// neither side may send FlagCompressed; a compressed frame then is an error
// (CodeDecompression). Dictionary ids so far:
//
//	0  none
//	1  DictV1: protocol/dict/v1.bin, 32,888 bytes, SHA-256
//	   436f0e88079e70e6a9b6086e964c2a3c1d4ed7cc5153e777dd325da7d1e64485
//
// A dictionary's bytes are part of the protocol: a different dictionary gets a
// new id, never the old one's.
//
// # Format of a compressed payload
//
// A frame with FlagCompressed (allowed on SEND, DELIVER, BATCH, GROUP and
// GROUP_EVENT) carries, after its header byte, one Zstandard frame (RFC 8878)
// compressed with the negotiated dictionary, written without its 4-byte magic
// number (28 B5 2F FD):
//
//	frame_header_descriptor | [window_descriptor] | frame_content_size | blocks…
//
//   - No Dictionary_ID field (Dictionary_ID_flag = 0): the dictionary is the
//     one negotiated at login. A frame that names a dictionary is rejected.
//   - Frame_Content_Size is required (Single_Segment_flag = 1, or an FCS flag
//     other than 0): it is the size of the uncompressed payload, and a decoder
//     rejects the frame before decoding when it is over its limit.
//   - No content checksum is written (Content_Checksum_flag = 0); one sent by
//     another encoder is verified. The frame is already protected by TCP or
//     the transport cipher; four bytes are 5–10% of a small frame.
//   - Exactly one Zstandard frame, and nothing after it.
//
// Decompressing gives the payload the frame would have had uncompressed, with
// the same type and the other flag bits. Compressed and uncompressed frames
// interleave freely; no state carries from one frame to the next.
//
// With libzstd (the C library on iOS, zstd-jni on Android): load the
// dictionary once (ZSTD_createCDict / ZSTD_createDDict; zstd-jni
// ZstdDictCompress / ZstdDictDecompress). To compress, use a ZSTD_CCtx with
// the dictionary and ZSTD_c_dictIDFlag = 0, ZSTD_c_checksumFlag = 0,
// ZSTD_c_contentSizeFlag = 1 (the default), any level (the Go side uses the
// fastest), one-shot (ZSTD_compress2, so the content size is known); then drop
// the first four bytes of the output. zstd-jni: ZstdCompressCtx.setDictID(false),
// setChecksum(false), setContentSize(true), and setMagicless(true) instead of
// dropping bytes. To decompress, put the four magic bytes back in front (or set
// the experimental ZSTD_d_format = ZSTD_f_zstd1_magicless; zstd-jni
// ZstdDecompressCtx.setMagicless(true)), read the content size with
// ZSTD_getFrameContentSize, refuse the frame if it is unknown or over the
// limit, and decompress into a buffer of exactly that size
// (ZSTD_decompress_usingDDict); fewer bytes out is an error too.
//
// The dictionary file is in zstd's dictionary format (magic 37 A4 30 EC, its
// own id 1, entropy tables, then 32 KiB of content), built compatible with
// libzstd 1.5.5 and older. compress_test.go checks it both ways against the
// zstd 1.5.4 command line tool, at levels 1 to 19.
//
// # When to compress
//
// A sender compresses a frame only when its payload is at least
// DefaultCompressThreshold bytes and the result is smaller; otherwise it
// sends the frame uncompressed. A receiver accepts either at any size.
//
// # Why zstd rather than s2
//
// Measured on held-out frames of this package's corpus (docs/BENCHMARKS.md,
// "Compression (protocol)"): with the dictionary, zstd shrinks plaintext
// frames to 1/1.49 at 100 B, 1/2.07 at 500 B and 1/2.51 at 2,000 B, and
// plaintext backlogs (BATCH) to 1/1.46–1/1.69; s2 with the same dictionary
// reaches 1.38, 1.56 and 1.64 (1.65, 2.01, 2.13 in its slower "better" mode).
// zstd with dictionaries is in libzstd, which iOS and Android apps link
// routinely; s2 with dictionaries exists only in Go, so every Kotlin and Swift
// client would need a port of its encoder and decoder. The price is CPU on
// the Go side: about 12–35 µs to compress one frame (s2: 1.5–4 µs), almost
// all of it fixed per frame (restoring the encoder's 256 KiB match table from
// the dictionary), and 0.5–12 µs to decompress. The threshold and a
// compressibility estimate keep that price off frames that would not shrink:
// an end-to-end encrypted frame costs 0.4–1 µs to pass over.
//
// End-to-end encrypted bodies do not compress, with or without a dictionary,
// and neither do member lists of random ids: compression pays for
// deployments that send plaintext (bots, system notices, unencrypted chat)
// and for their backlogs.

import (
	_ "embed" // the dictionaries
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress"
	"github.com/klauspost/compress/zstd"
)

// Dictionary ids, as carried in LOGIN.Dict and WELCOME.Dict.
const (
	DictNone uint32 = 0 // no compression
	DictV1   uint32 = 1 // protocol/dict/v1.bin
)

// DefaultCompressThreshold is the payload size, in bytes, below which a frame
// is never compressed. At 64 bytes every plaintext sample of the corpus
// shrinks (by 21% on average); at 48, one in seven does not, and below 40 the
// zstd frame's own 5–6 bytes eat the gain.
const DefaultCompressThreshold = 64

// maxInflate bounds what any Inflate call may produce, whatever max its caller
// passes: it sizes nothing, it only caps the zstd decoder's window and output.
// Every frame limit of the protocol is far below it.
const maxInflate = 8 << 20

// minEstimate is the compressibility estimate (compress.Estimate of the
// first estimateLen bytes; 0 for random bytes) below which AppendFrame does
// not try: on the corpus, ciphertext scores under 0.12 and never shrinks,
// plaintext scores over 0.22 and always shrinks from the threshold up. The
// estimate costs a few nanoseconds a byte, an attempt 10 µs or more, so the
// estimate looks at a prefix only. It decides nothing on the wire.
const (
	minEstimate = 0.15
	estimateLen = 512
)

// zstdMagic starts every zstd frame; compressed payloads leave it out.
var zstdMagic = [4]byte{0x28, 0xb5, 0x2f, 0xfd}

//go:generate go run ./internal/dictgen/cmd -o dict/v1.bin

//go:embed dict/v1.bin
var dictV1 []byte

// zstdDictID is the id inside dict/v1.bin's zstd header. It never travels
// on the wire; Inflate writes it back into the frame header it hands the
// decoder, which selects dictionaries by it.
const zstdDictID = 1

// Codec compresses and inflates frames with one dictionary. A Codec is
// immutable and safe for concurrent use: there is one per dictionary per
// process (see Lookup), shared by every event loop and connection, because
// it holds a zstd encoder and a block decoder per P (GOMAXPROCS), about
// 1 MiB per P in all (7.5 MiB at GOMAXPROCS=8), allocated on first use.
//
// A nil *Codec is "no dictionary negotiated": AppendFrame never compresses
// and Inflate rejects compressed frames.
type Codec struct {
	// Immutable after construction; shared by copies made by WithThreshold.
	id        uint32
	threshold int
	enc       *zstd.Encoder // EncodeAll is safe for concurrent use
	dec       *zstd.Decoder // DecodeAll is safe for concurrent use
}

var codecV1 = sync.OnceValue(func() *Codec { return newCodec(DictV1, dictV1) })

// Lookup returns the shared Codec for a dictionary id, building it on first
// use. It reports false for DictNone and for ids this version does not know,
// which a server answers with WELCOME.Dict = 0.
func Lookup(id uint32) (*Codec, bool) {
	if id == DictV1 {
		return codecV1(), true
	}
	return nil, false
}

// newCodec builds the encoder and decoder for a zstd dictionary; dict is one
// of the embedded files, so an error is a bug and panics.
func newCodec(id uint32, dict []byte) *Codec {
	// One encoder and one block decoder per P: EncodeAll and DecodeAll wait
	// for a free one, which never takes longer than one frame's work.
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderDict(dict),
		// Fastest: ratio within 3% of the better levels on small frames, at
		// a third to a fifth of their CPU (docs/BENCHMARKS.md).
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false),
		// Single segment: the header always carries the content size.
		zstd.WithSingleSegment(true),
		// Matches reach 256 KiB back: every frame and the dictionary. The
		// default (8 MiB) makes each encoder hold 5 MiB instead of 1.
		zstd.WithWindowSize(256<<10),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderConcurrency(n),
	)
	if err != nil {
		panic(fmt.Sprintf("protocol: dictionary %d: %v", id, err))
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderDicts(dict),
		zstd.WithDecoderConcurrency(n),
		zstd.WithDecoderMaxMemory(maxInflate),
		zstd.WithDecoderMaxWindow(maxInflate),
		// Output stops at cap(dst): Inflate sizes dst to the checked claim.
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		panic(fmt.Sprintf("protocol: dictionary %d: %v", id, err))
	}
	return &Codec{id: id, threshold: DefaultCompressThreshold, enc: enc, dec: dec}
}

// ID returns the dictionary id, or DictNone for a nil Codec.
func (c *Codec) ID() uint32 {
	if c == nil {
		return DictNone
	}
	return c.id
}

// WithThreshold returns a Codec that shares c's encoder and decoder and
// compresses payloads of at least n bytes (n ≤ 0: DefaultCompressThreshold).
func (c *Codec) WithThreshold(n int) *Codec {
	if c == nil {
		return nil
	}
	if n <= 0 {
		n = DefaultCompressThreshold
	}
	cc := *c
	cc.threshold = n
	return &cc
}

// AppendFrame appends a frame of type t with the given flags and payload,
// compressed (FlagCompressed set) when t allows it, the payload is at least
// the threshold, and the compressed payload is smaller; otherwise exactly as
// the package-level AppendFrame would (FlagCompressed in flags is ignored).
// It allocates only to grow dst. Any goroutine may call it.
func (c *Codec) AppendFrame(dst []byte, t Type, flags byte, payload []byte) []byte {
	flags &^= FlagCompressed
	if c == nil || len(payload) < c.threshold || len(payload) > maxInflate || !t.Valid() ||
		allowedFlags[t]&FlagCompressed == 0 || compress.Estimate(payload[:min(len(payload), estimateLen)]) < minEstimate {
		return AppendFrame(dst, t, flags, payload)
	}
	start := len(dst)
	// EncodeAll appends magic | FHD | dict id | FCS | blocks after dst, in
	// place when dst has room. The frame is rewritten over it: its length
	// prefix and header byte (at most 4 bytes) over the magic, then FHD
	// without the dict id flag, then everything after the dict id.
	z := c.enc.EncodeAll(payload, dst[start:start:cap(dst)])
	const skip = 6 // magic, FHD, 1-byte dict id
	if len(z) < skip+1 || [4]byte(z[:4]) != zstdMagic || z[4]&3 != 1 || z[5] != zstdDictID ||
		z[4]&0x20 == 0 || 1+len(z)-skip >= len(payload) {
		// Larger, or a header other than the one this code expects from
		// the encoder (a library change a test would catch).
		return AppendFrame(dst[:start], t, flags, payload)
	}
	fhd := z[4] &^ 3
	body := z[skip:]
	dst = appendHeader(dst[:start], t, flags|FlagCompressed, 1+len(body))
	dst = append(dst, fhd)
	// body may overlap dst's tail (when z was written in place); it starts
	// at or after where it is copied to, and append copies with memmove.
	return append(dst, body...)
}

// Inflate returns f with its payload decompressed, when f has
// FlagCompressed; any other frame is returned unchanged. The returned frame
// has FlagCompressed cleared and its other flags and type unchanged. Its
// Payload is written into dst's array when cap(dst) is large enough, else
// into a new one of exactly the decompressed size; it does not alias f.
//
// frameLimit is the reader's frame limit (bytes, header byte and payload, as for
// ReadFrame): the inflated frame obeys it like any other, so the payload may
// inflate to at most frameLimit-1 bytes. The size the payload claims is checked
// against that before anything is allocated or decoded; decoding stops as
// soon as the output would pass the claim. A payload that is not a valid
// compressed payload in this dictionary, claims more than frameLimit-1 bytes, or
// decodes to another size than it claims yields an error wrapping
// ErrDecompress (CodeDecompression); so does any compressed frame given to a
// nil Codec. Any goroutine may call it.
func (c *Codec) Inflate(f Frame, dst []byte, frameLimit int) (Frame, error) {
	if !f.Has(FlagCompressed) {
		return f, nil
	}
	if c == nil {
		return f, fmt.Errorf("%w: compressed %v with no dictionary negotiated", ErrDecompress, f.Type)
	}
	// The header byte counts toward the frame limit, as it does on the wire.
	limit := min(frameLimit-1, maxInflate)
	p := f.Payload
	size, hdr, err := contentSize(p)
	if err != nil {
		return f, err
	}
	if limit < 0 || size > uint64(limit) {
		return f, fmt.Errorf("%w: %v claims %d bytes, frame limit %d", ErrDecompress, f.Type, size, frameLimit)
	}
	n := int(size)

	// The decoder wants a standard frame: put the magic and the dict id back.
	sp := scratchPool.Get().(*[]byte)
	in := append((*sp)[:0], zstdMagic[:]...)
	in = append(in, p[0]|1)
	in = append(in, p[1:hdr]...) // window descriptor, if any
	in = append(in, zstdDictID)
	in = append(in, p[hdr:]...)

	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	out, err := c.dec.DecodeAll(in, dst[:0:n])
	*sp = in[:0]
	scratchPool.Put(sp)
	if err != nil {
		return f, fmt.Errorf("%w: %v: %v", ErrDecompress, f.Type, err)
	}
	if len(out) != n {
		return f, fmt.Errorf("%w: %v decodes to %d bytes, claims %d", ErrDecompress, f.Type, len(out), n)
	}
	f.Flags &^= FlagCompressed
	f.Payload = out
	return f, nil
}

// scratchPool holds buffers in which Inflate rebuilds a standard zstd frame
// (the payload plus 5 bytes); they grow to the largest compressed payload
// seen, at most a frame.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// contentSize parses the frame header at the front of a compressed payload
// (magic left out), checks that the blocks after it end exactly where the
// payload does, and returns Frame_Content_Size and the header's length up to
// the content size field. It reads block headers only; it allocates nothing.
func contentSize(p []byte) (size uint64, hdr int, err error) {
	if len(p) == 0 {
		return 0, 0, fmt.Errorf("%w: empty compressed payload", ErrDecompress)
	}
	fhd := p[0]
	single := fhd&0x20 != 0
	fcsFlag := fhd >> 6
	switch {
	case fhd&0x08 != 0:
		return 0, 0, fmt.Errorf("%w: reserved bit set in zstd frame header", ErrDecompress)
	case fhd&0x03 != 0:
		return 0, 0, fmt.Errorf("%w: zstd frame names a dictionary", ErrDecompress)
	case !single && fcsFlag == 0:
		return 0, 0, fmt.Errorf("%w: zstd frame without a content size", ErrDecompress)
	}
	hdr = 1
	if !single {
		hdr++ // window descriptor
	}
	fcsLen := [4]int{1, 2, 4, 8}[fcsFlag]
	if len(p) < hdr+fcsLen {
		return 0, 0, fmt.Errorf("%w: truncated zstd frame header", ErrDecompress)
	}
	b := p[hdr : hdr+fcsLen]
	switch fcsLen {
	case 1:
		size = uint64(b[0])
	case 2:
		size = uint64(binary.LittleEndian.Uint16(b)) + 256
	case 4:
		size = uint64(binary.LittleEndian.Uint32(b))
	default:
		size = binary.LittleEndian.Uint64(b)
	}
	// Walk the block headers: exactly one frame, nothing after it.
	pos := hdr + fcsLen
	for last := false; !last; {
		if len(p)-pos < 3 {
			return 0, 0, fmt.Errorf("%w: truncated zstd block header", ErrDecompress)
		}
		bh := int(p[pos]) | int(p[pos+1])<<8 | int(p[pos+2])<<16
		pos += 3
		last = bh&1 != 0
		switch bh >> 1 & 3 {
		case 0, 2: // raw, compressed: Block_Size bytes follow
			pos += bh >> 3
		case 1: // RLE: one byte, repeated Block_Size times
			pos++
		default:
			return 0, 0, fmt.Errorf("%w: reserved zstd block type", ErrDecompress)
		}
		if pos > len(p) {
			return 0, 0, fmt.Errorf("%w: truncated zstd block", ErrDecompress)
		}
	}
	if fhd&0x04 != 0 {
		pos += 4 // content checksum
	}
	if pos != len(p) {
		return 0, 0, fmt.Errorf("%w: %d bytes after the zstd frame", ErrDecompress, len(p)-pos)
	}
	return size, hdr, nil
}
