package protocol

import (
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// rleSend returns the compressed payload of a SEND of n bytes (msg_id 1, to
// 1, a body of n-2 bytes 0x01): RLE blocks of at most 128 KiB (zstd's block
// limit) under a 4-byte content size of n. Nothing in it is wrong but, for
// a given frame limit, its size.
func rleSend(n int) []byte {
	p := []byte{0xa0, 0, 0, 0, 0} // single segment, 4-byte content size
	binary.LittleEndian.PutUint32(p[1:], uint32(n))
	for n > 0 {
		size := min(n, 128<<10)
		n -= size
		bh := 1<<1 | size<<3 // RLE, Block_Size
		if n == 0 {
			bh |= 1 // last block
		}
		p = append(p, byte(bh), byte(bh>>8), byte(bh>>16), 0x01)
	}
	return p
}

// TestInflateFrameLimit checks that the inflated frame obeys the frame
// limit with its header byte counted: a SEND inflating to MaxFrame-1 bytes
// of payload is a frame of exactly MaxFrame and decodes; one byte more is
// DECOMPRESSION.
func TestInflateFrameLimit(t *testing.T) {
	c, _ := Lookup(DictV1)
	for _, tc := range []struct {
		payload int
		ok      bool
	}{
		{MaxFrame - 1, true},
		{MaxFrame, false},
	} {
		f := Frame{Type: TypeSend, Flags: FlagCompressed, Payload: rleSend(tc.payload)}
		got, err := c.Inflate(f, nil, MaxFrame)
		if !tc.ok {
			if CodeOf(err) != CodeDecompression {
				t.Errorf("payload of %d bytes with frame limit %d: %v, want DECOMPRESSION", tc.payload, MaxFrame, err)
			}
			continue
		}
		var s Send
		if err == nil {
			err = s.Decode(got)
		}
		if err != nil || len(got.Payload) != tc.payload || len(s.Body) != tc.payload-2 {
			t.Errorf("payload of %d bytes with frame limit %d: %v, %d bytes", tc.payload, MaxFrame, err, len(got.Payload))
		}
	}
}

// TestVectorsCompressedFaultsStandAlone checks that each invalid compressed
// vector breaks only the rule it is named after: undoing that one fault
// makes it decode, so a decoder that skips the check fails the vector.
func TestVectorsCompressedFaultsStandAlone(t *testing.T) {
	// Each fix returns the repaired compressed payload, the frame limit and
	// the dictionary to read it with.
	type fix func(p []byte, limit int, dict uint32) ([]byte, int, uint32)
	fixes := map[string]fix{
		"compressed SEND without a negotiated dictionary": func(p []byte, limit int, _ uint32) ([]byte, int, uint32) {
			return p, limit, DictV1
		},
		"compressed SEND inflating to 1,000,000 bytes": func(p []byte, _ int, dict uint32) ([]byte, int, uint32) {
			return p, 1 + 1_000_000, dict
		},
		"compressed SEND inflating to 66,560 bytes, a frame one byte over the limit": func(p []byte, limit int, dict uint32) ([]byte, int, uint32) {
			return p, limit + 1, dict
		},
		"compressed SEND, reserved bit in the zstd header": func(p []byte, limit int, dict uint32) ([]byte, int, uint32) {
			return append([]byte{p[0] &^ 0x08}, p[1:]...), limit, dict
		},
		"compressed SEND naming a zstd dictionary": func(p []byte, limit int, dict uint32) ([]byte, int, uint32) {
			return append([]byte{p[0] &^ 0x03}, p[2:]...), limit, dict // flag and 1-byte id gone
		},
		"compressed SEND, bytes after the zstd frame": func(p []byte, limit int, dict uint32) ([]byte, int, uint32) {
			return p[:len(p)-1], limit, dict
		},
	}
	file := loadVectors(t)
	seen := 0
	for _, bc := range file.Invalid {
		b, _ := hex.DecodeString(bc.Hex)
		f, _, err := ReadFrame(b, file.MaxFrame)
		if err != nil || !f.Has(FlagCompressed) || f.Type == TypeAck {
			continue
		}
		t.Run(bc.Name, func(t *testing.T) {
			fx, ok := fixes[bc.Name]
			if !ok {
				t.Fatalf("no fix listed for this compressed vector")
			}
			seen++
			if _, err := decodeWire(b, file.MaxFrame, bc.Dict); errName(err) != bc.Error {
				t.Fatalf("as published: %v, want %s", err, bc.Error)
			}
			p, limit, dict := fx(f.Payload, file.MaxFrame, bc.Dict)
			fixed := AppendFrame(nil, f.Type, f.Flags, p)
			v, err := decodeWire(fixed, limit, dict)
			if err != nil {
				t.Fatalf("with its named fault undone, %x still fails: %v", fixed, err)
			}
			if s, ok := v.(*Send); !ok || s.MsgID == 0 {
				t.Fatalf("decoded %+v, want a SEND", v)
			}
		})
	}
	if seen != len(fixes) {
		t.Errorf("%d compressed vectors checked, %d fixes listed", seen, len(fixes))
	}
}
