package protocol_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"switchboard/protocol"
	"switchboard/protocol/internal/dictgen"
)

var regenDict = flag.Bool("dictgen", false, "also rebuild dictionary v1 from its corpus and compare (a few seconds)")

// The dictionary is part of the protocol: any change to its bytes must come
// with a new id. These pins fail on an accidental change.
const (
	dictV1Len    = 32888
	dictV1SHA256 = "436f0e88079e70e6a9b6086e964c2a3c1d4ed7cc5153e777dd325da7d1e64485"
)

func TestDictV1Pinned(t *testing.T) {
	b, err := os.ReadFile("dict/v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if len(b) != dictV1Len || hex.EncodeToString(sum[:]) != dictV1SHA256 {
		t.Fatalf("dict/v1.bin is %d bytes, sha256 %x; dictionary 1 is %d bytes, sha256 %s: "+
			"a changed dictionary needs a new id", len(b), sum, dictV1Len, dictV1SHA256)
	}
}

// TestDictV1Reproducible rebuilds the dictionary from its generator. It runs
// with -dictgen: training takes seconds, longer under -race.
func TestDictV1Reproducible(t *testing.T) {
	if !*regenDict {
		t.Skip("run with -dictgen")
	}
	samples := dictgen.New(dictgen.TrainSeed).Corpus(4000)
	d, err := dictgen.BuildZstd(dictgen.TrainContent(samples, 32<<10, 64), samples)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(d); hex.EncodeToString(sum[:]) != dictV1SHA256 {
		t.Fatalf("generator now builds %d bytes, sha256 %x, not dictionary 1", len(d), sum)
	}
}

func codecV1(tb testing.TB) *protocol.Codec {
	c, ok := protocol.Lookup(protocol.DictV1)
	if !ok || c == nil {
		tb.Fatal("Lookup(DictV1) failed")
	}
	return c
}

func TestCodecLookup(t *testing.T) {
	for _, tc := range []struct {
		id uint32
		ok bool
	}{{protocol.DictNone, false}, {protocol.DictV1, true}, {2, false}, {1 << 31, false}} {
		c, ok := protocol.Lookup(tc.id)
		if ok != tc.ok || (c != nil) != tc.ok || c.ID() != map[bool]uint32{true: tc.id}[tc.ok] {
			t.Errorf("Lookup(%d) = %v, %v", tc.id, c, ok)
		}
	}
	a, _ := protocol.Lookup(protocol.DictV1)
	b, _ := protocol.Lookup(protocol.DictV1)
	if a != b {
		t.Error("Lookup builds a new Codec each time; it must share one")
	}
}

// roundTrip encodes with c, parses the frame back and inflates it.
func roundTrip(t *testing.T, c *protocol.Codec, typ protocol.Type, flags byte, payload []byte) (wire []byte, f protocol.Frame) {
	t.Helper()
	wire = c.AppendFrame([]byte("prefix"), typ, flags, payload)
	if string(wire[:6]) != "prefix" {
		t.Fatal("AppendFrame overwrote dst")
	}
	wire = wire[6:]
	rf, n, err := protocol.ReadFrame(wire, len(wire))
	if err != nil || n != len(wire) {
		t.Fatalf("ReadFrame: n=%d of %d, %v", n, len(wire), err)
	}
	f, err = c.Inflate(rf, nil, protocol.MaxServerFrame)
	if err != nil {
		t.Fatalf("Inflate %v of %d bytes: %v", typ, len(payload), err)
	}
	if f.Type != typ || f.Flags != flags || !bytes.Equal(f.Payload, payload) {
		t.Fatalf("round trip of %v %d bytes: got %v flags %#x, %d bytes", typ, len(payload), f.Type, f.Flags, len(f.Payload))
	}
	return wire, rf
}

func TestCodecRoundTrip(t *testing.T) {
	c := codecV1(t)
	g := dictgen.New(dictgen.TestSeed)
	for _, class := range dictgen.Classes {
		for _, size := range []int{1, 10, 50, 63, 64, 65, 100, 200, 500, 1000, 2000, 10_000, 60_000, 200_000} {
			typ, flags, p := g.Sample(class, size)
			_, rf := roundTrip(t, c, typ, flags, p)
			// Plaintext always shrinks from the threshold up; ciphertext never.
			want := map[dictgen.Class]int{dictgen.Plaintext: 1, dictgen.Ciphertext: 0}
			if w, ok := want[class]; ok && len(p) >= protocol.DefaultCompressThreshold &&
				rf.Has(protocol.FlagCompressed) != (w == 1) {
				t.Errorf("%v %d bytes: compressed = %v", class, len(p), rf.Has(protocol.FlagCompressed))
			}
		}
	}
	// Arbitrary payloads, also on every type that may be compressed.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		p := make([]byte, r.IntN(3000))
		for j := range p {
			p[j] = "aaaaabbbcd\x00\x01"[r.IntN(12)] // compressible
		}
		typ := []protocol.Type{protocol.TypeSend, protocol.TypeDeliver, protocol.TypeBatch,
			protocol.TypeGroup, protocol.TypeGroupEvent, protocol.TypeReceipt}[i%6]
		roundTrip(t, c, typ, 0, p)
	}
}

func TestCodecThreshold(t *testing.T) {
	c := codecV1(t)
	text := bytes.Repeat([]byte("see you at the station at seven, bring the tickets! "), 100)
	for _, tc := range []struct {
		name       string
		codec      *protocol.Codec
		typ        protocol.Type
		flags      byte
		payload    []byte
		compressed bool
	}{
		{"below threshold", c, protocol.TypeDeliver, protocol.FlagB, text[:protocol.DefaultCompressThreshold-1], false},
		{"at threshold", c, protocol.TypeDeliver, protocol.FlagB, text[:protocol.DefaultCompressThreshold], true},
		{"large", c, protocol.TypeBatch, 0, text, true},
		{"caller's FlagCompressed ignored", c, protocol.TypeSend, protocol.FlagA | protocol.FlagCompressed, text[:40], false},
		{"type without compression", c, protocol.TypeReceipt, protocol.FlagA, text, false},
		{"nil codec", nil, protocol.TypeDeliver, 0, text, false},
		{"raised threshold", c.WithThreshold(1000), protocol.TypeDeliver, 0, text[:999], false},
		{"lowered threshold", c.WithThreshold(20), protocol.TypeDeliver, 0, text[:40], true},
		{"random bytes", c, protocol.TypeDeliver, 0, randomBytes(2000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.codec.AppendFrame(nil, tc.typ, tc.flags, tc.payload)
			plain := protocol.AppendFrame(nil, tc.typ, tc.flags&^protocol.FlagCompressed, tc.payload)
			if !tc.compressed {
				if !bytes.Equal(got, plain) {
					t.Fatalf("got % x, want the uncompressed frame", got)
				}
				return
			}
			f, _, err := protocol.ReadFrame(got, len(got))
			if err != nil {
				t.Fatal(err)
			}
			if f.Flags != tc.flags|protocol.FlagCompressed || f.Type != tc.typ {
				t.Fatalf("type %v flags %#x, want %v %#x", f.Type, f.Flags, tc.typ, tc.flags|protocol.FlagCompressed)
			}
			if len(got) >= len(plain) {
				t.Fatalf("compressed frame of %d bytes, uncompressed %d", len(got), len(plain))
			}
			// No magic number, no dictionary id.
			if bytes.HasPrefix(f.Payload, []byte{0x28, 0xb5, 0x2f, 0xfd}) || f.Payload[0]&3 != 0 {
				t.Fatalf("payload header % x", f.Payload[:6])
			}
		})
	}
}

// TestOnlyWhenShrinks uses frames that pass the compressibility estimate but
// do not shrink: member lists of random ids.
func TestCodecOnlyWhenShrinks(t *testing.T) {
	c := codecV1(t)
	g := dictgen.New(dictgen.TestSeed)
	tried := 0
	for range 50 {
		typ, flags, p := g.Sample(dictgen.GroupEvent, 200)
		if compress.Estimate(p) >= 0.15 {
			tried++
		}
		if got, want := c.AppendFrame(nil, typ, flags, p), protocol.AppendFrame(nil, typ, flags, p); !bytes.Equal(got, want) {
			t.Fatalf("a member list was sent compressed (%d bytes, %d plain)", len(got), len(want))
		}
	}
	if tried < 25 {
		t.Fatalf("only %d of 50 samples reached the encoder; the test no longer tests the size check", tried)
	}
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestInflateUncompressed(t *testing.T) {
	c := codecV1(t)
	f := protocol.Frame{Type: protocol.TypeDeliver, Flags: protocol.FlagA, Payload: []byte("abc")}
	for _, codec := range []*protocol.Codec{c, nil} {
		got, err := codec.Inflate(f, nil, 10)
		if err != nil || got.Type != f.Type || got.Flags != f.Flags || &got.Payload[0] != &f.Payload[0] {
			t.Fatalf("Inflate of an uncompressed frame: %+v, %v", got, err)
		}
	}
}

func TestInflateNoDictionary(t *testing.T) {
	var c *protocol.Codec
	f := protocol.Frame{Type: protocol.TypeBatch, Flags: protocol.FlagCompressed, Payload: []byte{0x20, 0, 1, 0, 0}}
	_, err := c.Inflate(f, nil, 100)
	if !errors.Is(err, protocol.ErrDecompress) || protocol.CodeOf(err) != protocol.CodeDecompression {
		t.Fatalf("nil codec: %v", err)
	}
}

func TestInflateIntoDst(t *testing.T) {
	c := codecV1(t)
	payload := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog "), 40)
	wire := c.AppendFrame(nil, protocol.TypeBatch, 0, payload)
	f, _, _ := protocol.ReadFrame(wire, len(wire))
	dst := make([]byte, 0, 4096)
	got, err := c.Inflate(f, dst, 4096)
	if err != nil || !bytes.Equal(got.Payload, payload) || &got.Payload[0] != &dst[:1][0] {
		t.Fatalf("Inflate into dst: %v, same array %v", err, err == nil && &got.Payload[0] == &dst[:1][0])
	}
	if cap(got.Payload) != len(payload) {
		t.Errorf("payload cap %d, want %d (the claim)", cap(got.Payload), len(payload))
	}
	if lossyPools() {
		return // the race detector drops sync.Pool items on purpose
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = c.Inflate(f, dst, 4096) }); a > 0 {
		t.Errorf("Inflate into a large enough dst: %.1f allocs, want 0", a)
	}
	out := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(100, func() { out = c.AppendFrame(out[:0], protocol.TypeBatch, 0, payload) }); a > 0 {
		t.Errorf("AppendFrame into a large enough dst: %.1f allocs, want 0", a)
	}
}

// compressedPayload returns the compressed payload AppendFrame makes of p.
func compressedPayload(t testing.TB, c *protocol.Codec, p []byte) []byte {
	wire := c.AppendFrame(nil, protocol.TypeBatch, 0, p)
	f, _, err := protocol.ReadFrame(wire, len(wire))
	if err != nil || !f.Has(protocol.FlagCompressed) {
		t.Fatalf("payload not compressed: %v", err)
	}
	return f.Payload
}

// bombs returns compressed payloads that claim or produce far more than max.
func bombs(t testing.TB, c *protocol.Codec) map[string][]byte {
	// A tiny payload claiming 1 GiB: single segment, 4-byte content size,
	// one last RLE block.
	claim := []byte{0xa0, 0, 0, 0, 0x40, 0x03 | 1<<3, 0, 0, 'x'}
	binary.LittleEndian.PutUint32(claim[1:], 1<<30)
	// A 64-bit claim.
	claim64 := []byte{0xe0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x03 | 1<<3, 0, 0, 'x'}
	// A real payload of 4 MiB of zeros: claims 4 MiB.
	real4M := compressedPayload(t, c, make([]byte, 4<<20))
	// The same, claiming 1,000 bytes (the content size is 4 bytes wide).
	lying := bytes.Clone(real4M)
	if lying[0]>>6 != 2 {
		t.Fatalf("unexpected header %#x", lying[0])
	}
	binary.LittleEndian.PutUint32(lying[1:], 1000)
	// 4,096 RLE blocks of 1,000 bytes each under a claim of 100 bytes.
	rle := []byte{0x20, 100}
	for i := range 4096 {
		bh := 1<<1 | 1000<<3
		if i == 4095 {
			bh |= 1
		}
		rle = append(rle, byte(bh), byte(bh>>8), byte(bh>>16), 'y')
	}
	return map[string][]byte{"claims 1 GiB": claim, "claims 2^63": claim64, "4 MiB of zeros": real4M,
		"4 MiB claiming 1000": lying, "4 MiB of RLE claiming 100": rle}
}

func TestInflateBomb(t *testing.T) {
	c := codecV1(t)
	const max = 64 << 10
	// Warm the decoder up: its block decoders are built on first use.
	warm := compressedPayload(t, c, bytes.Repeat([]byte("warm up "), 1000))
	if _, err := c.Inflate(protocol.Frame{Type: protocol.TypeBatch, Flags: protocol.FlagCompressed, Payload: warm}, nil, max); err != nil {
		t.Fatal(err)
	}
	for name, p := range bombs(t, c) {
		t.Run(name, func(t *testing.T) {
			f := protocol.Frame{Type: protocol.TypeBatch, Flags: protocol.FlagCompressed, Payload: p}
			var err error
			const runs = 20
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range runs {
				_, err = c.Inflate(f, nil, max)
			}
			runtime.ReadMemStats(&after)
			if !errors.Is(err, protocol.ErrDecompress) || protocol.CodeOf(err) != protocol.CodeDecompression {
				t.Fatalf("Inflate: %v, want ErrDecompress", err)
			}
			// Each call may allocate the claim (when under max), the
			// scratch copy of the input and the error; never what the
			// payload expands to.
			perCall := (after.TotalAlloc - before.TotalAlloc) / runs
			t.Logf("%v; %d bytes allocated a call", err, perCall)
			if bound := uint64(max + len(p) + 4<<10); perCall > bound {
				t.Fatalf("Inflate allocated %d bytes a call, bound %d", perCall, bound)
			}
		})
	}
}

func TestInflateCorrupt(t *testing.T) {
	c := codecV1(t)
	g := dictgen.New(dictgen.TestSeed)
	_, _, plain := g.Sample(dictgen.BatchPlain, 1000)
	good := compressedPayload(t, c, plain)
	inflate := func(p []byte, max int) (protocol.Frame, error) {
		return c.Inflate(protocol.Frame{Type: protocol.TypeBatch, Flags: protocol.FlagCompressed, Payload: p}, nil, max)
	}
	// The limit is a frame limit: the header byte counts.
	if f, err := inflate(good, 1+len(plain)); err != nil || !bytes.Equal(f.Payload, plain) {
		t.Fatalf("good payload: %v", err)
	}
	if _, err := inflate(good, len(plain)); !errors.Is(err, protocol.ErrDecompress) {
		t.Fatalf("inflated frame one byte over the limit: %v", err)
	}
	if _, err := inflate(good, -1); !errors.Is(err, protocol.ErrDecompress) {
		t.Fatalf("negative max: %v", err)
	}
	for n := range len(good) {
		if _, err := inflate(good[:n], protocol.MaxServerFrame); !errors.Is(err, protocol.ErrDecompress) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	for name, p := range map[string][]byte{
		"trailing byte":       append(bytes.Clone(good), 0),
		"second frame":        append(bytes.Clone(good), good...),
		"names a dictionary":  append([]byte{good[0] | 1, 1}, good[1:]...),
		"reserved bit":        append([]byte{good[0] | 8}, good[1:]...),
		"no content size":     {0x00, 0x00, 0x01, 0x00, 0x00},
		"reserved block type": {0x20, 5, 0x07, 0, 0},
		"claims more":         append([]byte{good[0], good[1] + 1}, good[2:]...),
	} {
		if _, err := inflate(p, protocol.MaxServerFrame); !errors.Is(err, protocol.ErrDecompress) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Flipped bits: without a checksum some still decode (to other bytes),
	// but never to another size than claimed, and never panic.
	for i := range len(good) * 8 {
		p := bytes.Clone(good)
		p[i/8] ^= 1 << (i % 8)
		f, err := inflate(p, protocol.MaxServerFrame)
		if err == nil && len(f.Payload) != len(plain) && i/8 > 3 {
			t.Fatalf("bit %d: decoded %d bytes", i, len(f.Payload))
		}
		if err != nil && !errors.Is(err, protocol.ErrDecompress) {
			t.Fatalf("bit %d: %v", i, err)
		}
	}
}

// libzstdVector is the payload of a DELIVER compressed by the zstd command
// line tool (libzstd 1.5.4) with dictionary v1:
//
//	zstd -1 -D protocol/dict/v1.bin --no-check --no-dictID -c payload | tail -c +5
var libzstdVector = struct{ payload, compressed string }{
	"2a87ad4b63c089911c4865792c20617265207765207374696c6c206f6e20666f722064696e6e657220746f6e696768743f20492063616e206272696e67207468652077696e6520616e6420736f6d65206465737365727420696620796f752077616e74203a29",
	"20665d0200e3820a2c379f1e5f27d1e5fc7cce0f7d1edecfe3eef85ae8eb7c9cf7db4d9f6ba8f327ce5b53884229eaa230040800af132369e23c505bd711ae4b1dd6570c482224401554a29d2604fb02",
}

func TestInflateLibzstd(t *testing.T) {
	c := codecV1(t)
	want, _ := hex.DecodeString(libzstdVector.payload)
	z, _ := hex.DecodeString(libzstdVector.compressed)
	f, err := c.Inflate(protocol.Frame{Type: protocol.TypeDeliver, Flags: protocol.FlagB | protocol.FlagCompressed, Payload: z}, nil, 1000)
	if err != nil || !bytes.Equal(f.Payload, want) || f.Flags != protocol.FlagB {
		t.Fatalf("libzstd vector: %v, % x", err, f.Payload)
	}
	var d protocol.Deliver
	if err := d.Decode(f); err != nil || d.Seq != 42 || d.From != 1234567 {
		t.Fatalf("decoded DELIVER: %+v, %v", d, err)
	}
}

// TestLibzstdDecodes hands what AppendFrame compresses, with the magic put
// back, to the zstd command line tool when it is installed.
func TestCodecLibzstdDecodes(t *testing.T) {
	bin, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("no zstd command")
	}
	c := codecV1(t)
	g := dictgen.New(dictgen.TestSeed)
	dir := t.TempDir()
	for _, class := range []dictgen.Class{dictgen.Plaintext, dictgen.BatchPlain} {
		for _, size := range []int{64, 500, 5000, 100_000} {
			_, _, p := g.Sample(class, size)
			z := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, compressedPayload(t, c, p)...)
			in := filepath.Join(dir, "in.zst")
			if err := os.WriteFile(in, z, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-q", "-d", "-D", "dict/v1.bin", "-c", in).Output()
			if err != nil || !bytes.Equal(out, p) {
				t.Fatalf("%v %d: zstd -d: %v, %d bytes of %d", class, size, err, len(out), len(p))
			}
			// And the other way, at several levels.
			raw := filepath.Join(dir, "payload")
			if err := os.WriteFile(raw, p, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, level := range []string{"-1", "-3", "-9", "-19"} {
				z, err := exec.Command(bin, "-q", level, "-D", "dict/v1.bin", "--no-check", "--no-dictID", "-c", raw).Output()
				if err != nil || len(z) < 4 {
					t.Fatalf("zstd %s: %v", level, err)
				}
				f, err := c.Inflate(protocol.Frame{Type: protocol.TypeBatch, Flags: protocol.FlagCompressed, Payload: z[4:]}, nil, 1+len(p))
				if err != nil || !bytes.Equal(f.Payload, p) {
					t.Fatalf("%v %d: Inflate of zstd %s: %v", class, size, level, err)
				}
			}
		}
	}
}

func TestCodecConcurrent(t *testing.T) {
	c := codecV1(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := dictgen.New(uint64(100 + w))
			var wire, dst []byte
			for i := range 50 {
				class := dictgen.Classes[i%len(dictgen.Classes)]
				typ, flags, p := g.Sample(class, 50+i*40)
				wire = c.AppendFrame(wire[:0], typ, flags, p)
				f, _, err := protocol.ReadFrame(wire, len(wire))
				if err == nil {
					f, err = c.Inflate(f, dst, protocol.MaxServerFrame)
				}
				if err != nil || !bytes.Equal(f.Payload, p) {
					t.Errorf("worker %d frame %d: %v", w, i, err)
					return
				}
				dst = f.Payload[:0]
			}
		}()
	}
	wg.Wait()
}

func FuzzInflate(f *testing.F) {
	c := codecV1(f)
	g := dictgen.New(dictgen.TestSeed)
	for _, class := range dictgen.Classes {
		_, _, p := g.Sample(class, 300)
		f.Add(compressedPayload(f, c, append(p, bytes.Repeat([]byte("pad "), 20)...)), 4096)
	}
	for _, p := range bombs(f, c) {
		if len(p) < 4096 {
			f.Add(p, 4096)
		}
	}
	f.Add([]byte{0x20, 0, 1, 0, 0}, 0)
	f.Fuzz(func(t *testing.T, p []byte, max int) {
		max = max & (1<<20 - 1)
		in := protocol.Frame{Type: protocol.TypeBatch, Flags: protocol.FlagCompressed, Payload: p}
		out, err := c.Inflate(in, nil, max)
		if err != nil {
			if !errors.Is(err, protocol.ErrDecompress) {
				t.Fatalf("error not ErrDecompress: %v", err)
			}
			return
		}
		if 1+len(out.Payload) > max || out.Has(protocol.FlagCompressed) || out.Type != protocol.TypeBatch {
			t.Fatalf("inflated %d bytes with max %d, flags %#x", len(out.Payload), max, out.Flags)
		}
	})
}

func FuzzCodecRoundTrip(f *testing.F) {
	f.Add([]byte("hello hello hello hello hello hello hello hello hello hello hello hello"))
	f.Add(randomBytes(100))
	f.Fuzz(func(t *testing.T, p []byte) {
		roundTrip(t, codecV1(t).WithThreshold(1), protocol.TypeDeliver, protocol.FlagA, p)
	})
}

// Figures for docs/BENCHMARKS.md ("Compression"): go test -run TestCompressionFigures -figures ./protocol/
var (
	printFigures = flag.Bool("figures", false, "print the compression ratio table")
	figuresDict  = flag.String("figures-dict", "dict/v1.bin", "zstd dictionary of the zstd+dict and s2+dict figures")
)

var figureSizes = []int{50, 100, 200, 500, 1000, 2000}

// samples returns n held-out payloads per class and size (not the training
// corpus: another seed).
func samples(n int) map[dictgen.Class]map[int][][]byte {
	g := dictgen.New(dictgen.TestSeed)
	out := make(map[dictgen.Class]map[int][][]byte)
	for _, class := range dictgen.Classes {
		out[class] = make(map[int][][]byte)
		for _, size := range figureSizes {
			for range n {
				_, _, p := g.Sample(class, size)
				out[class][size] = append(out[class][size], p)
			}
		}
	}
	return out
}

func TestCompressionFigures(t *testing.T) {
	if !*printFigures {
		t.Skip("run with -figures")
	}
	all := samples(200)
	algs := algorithms(t)
	fmt.Printf("| class | algorithm |")
	for _, size := range figureSizes {
		fmt.Printf(" %d B |", size)
	}
	fmt.Printf("\n|---|---|%s\n", bytesRepeat("---:|", len(figureSizes)))
	for _, class := range dictgen.Classes {
		for _, a := range algs {
			fmt.Printf("| %v | %s |", class, a.name)
			for _, size := range figureSizes {
				in, out := 0, 0
				for _, p := range all[class][size] {
					in += len(p)
					out += a.size(p)
				}
				fmt.Printf(" %.2f |", float64(in)/float64(out))
			}
			fmt.Println()
		}
	}
}

func bytesRepeat(s string, n int) string { return string(bytes.Repeat([]byte(s), n)) }

// lossyPools reports whether sync.Pool drops what is put in it, as it does
// on purpose under the race detector.
func lossyPools() bool {
	var p sync.Pool
	for range 100 {
		x := new(int)
		p.Put(x)
		if p.Get() != x {
			return true
		}
	}
	return false
}

type algorithm struct {
	name string
	size func(p []byte) int // size of p compressed, as it would travel
}

// algorithms returns the candidates the figures compare: zstd and s2, with
// and without the dictionary, and the Codec as it sends (threshold, estimate
// and "only when smaller" included).
func algorithms(tb testing.TB) []algorithm {
	d, err := os.ReadFile(*figuresDict)
	if err != nil {
		tb.Fatal(err)
	}
	// The options of the Codec's encoder.
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithSingleSegment(true), zstd.WithWindowSize(256 << 10), zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderConcurrency(1)}
	zd, err := zstd.NewWriter(nil, append(opts, zstd.WithEncoderDict(d))...)
	if err != nil {
		tb.Fatal(err)
	}
	zn, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	sd := s2.MakeDict(d[max(len(d)-s2.MaxDictSize, 0):], nil) // the content: the end of the file
	c := codecV1(tb)
	var buf []byte
	return []algorithm{
		{"Codec (as sent)", func(p []byte) int {
			buf = c.AppendFrame(buf[:0], protocol.TypeDeliver, 0, p)
			f, _, _ := protocol.ReadFrame(buf, len(buf))
			return len(f.Payload)
		}},
		{"zstd+dict", func(p []byte) int { buf = zd.EncodeAll(p, buf[:0]); return len(buf) - 5 }},
		{"zstd", func(p []byte) int { buf = zn.EncodeAll(p, buf[:0]); return len(buf) - 4 }},
		{"s2+dict", func(p []byte) int { buf = sd.Encode(buf[:cap(buf)], p); return len(buf) }},
		{"s2+dict better", func(p []byte) int { buf = sd.EncodeBetter(buf[:cap(buf)], p); return len(buf) }},
		{"s2", func(p []byte) int { buf = s2.Encode(buf[:cap(buf)], p); return len(buf) }},
	}
}

var benchSamples = sync.OnceValue(func() map[dictgen.Class]map[int][][]byte { return samples(100) })

// BenchmarkCodecEncode measures AppendFrame as a server sends: threshold,
// estimate and "only when smaller" included. ratio is payload bytes in over
// payload bytes sent.
func BenchmarkCodecEncode(b *testing.B) {
	c := codecV1(b)
	for _, class := range dictgen.Classes {
		for _, size := range figureSizes {
			ps := benchSamples()[class][size]
			b.Run(fmt.Sprintf("%v/%d", class, size), func(b *testing.B) {
				b.ReportAllocs()
				in, out := 0, 0
				for _, p := range ps {
					in += len(p)
					w := c.AppendFrame(nil, protocol.TypeBatch, 0, p)
					f, _, _ := protocol.ReadFrame(w, len(w))
					out += len(f.Payload)
				}
				b.SetBytes(int64(in / len(ps)))
				buf := make([]byte, 0, 4096)
				i := 0
				for b.Loop() {
					buf = c.AppendFrame(buf[:0], protocol.TypeBatch, 0, ps[i%len(ps)])
					i++
				}
				b.ReportMetric(float64(in)/float64(out), "ratio")
			})
		}
	}
}

// BenchmarkCodecDecode measures Inflate of the frames AppendFrame made
// (uncompressed ones pass through at no cost).
func BenchmarkCodecDecode(b *testing.B) {
	c := codecV1(b)
	for _, class := range dictgen.Classes {
		for _, size := range figureSizes {
			ps := benchSamples()[class][size]
			b.Run(fmt.Sprintf("%v/%d", class, size), func(b *testing.B) {
				b.ReportAllocs()
				var frames []protocol.Frame
				in, out := 0, 0
				for _, p := range ps {
					w := c.AppendFrame(nil, protocol.TypeBatch, 0, p)
					f, _, _ := protocol.ReadFrame(w, len(w))
					frames = append(frames, f)
					in += len(p)
					out += len(f.Payload)
				}
				b.SetBytes(int64(in / len(ps)))
				dst := make([]byte, 0, 4096)
				i := 0
				for b.Loop() {
					if _, err := c.Inflate(frames[i%len(frames)], dst, protocol.MaxServerFrame); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.ReportMetric(float64(in)/float64(out), "ratio")
			})
		}
	}
}

// BenchmarkCompressAlgorithms compares the cost of compressing one frame
// (always, no threshold) with each candidate, on plaintext DELIVERs.
func BenchmarkCompressAlgorithms(b *testing.B) {
	for _, a := range algorithms(b) {
		for _, size := range figureSizes {
			ps := benchSamples()[dictgen.Plaintext][size]
			b.Run(fmt.Sprintf("%s/%d", a.name, size), func(b *testing.B) {
				in, out := 0, 0
				for _, p := range ps {
					in += len(p)
					out += a.size(p)
				}
				b.SetBytes(int64(in / len(ps)))
				i := 0
				for b.Loop() {
					a.size(ps[i%len(ps)])
					i++
				}
				b.ReportMetric(float64(in)/float64(out), "ratio")
			})
		}
	}
}
