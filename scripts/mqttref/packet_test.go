package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

func TestPacketBytes(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, 120)
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"connect", appendConnect(nil, "c1", 600), "10 0e 0004 4d515454 04 02 0258 0002 6331"},
		{"subscribe", appendSubscribe(nil, 1, "u/7"), "82 08 0001 0003 752f37 01"},
		// 2 + 3 + 2 + 120 = 127 bytes: the last length of one byte.
		{"publish, one-byte length", appendPublish(nil, 9, "u/7", payload)[:10], "32 7f 0003 752f37 0009 ab"},
		// 128 bytes: two bytes of length, 0x80 0x01.
		{"publish, two-byte length", appendPublish(nil, 9, "u/7", append(payload, 0xab))[:11], "32 8001 0003 752f37 0009 ab"},
		{"puback", appendPuback(nil, 0x1234), "40 02 1234"},
	} {
		want, _ := hex.DecodeString(string(bytes.ReplaceAll([]byte(tc.want), []byte(" "), nil)))
		if !bytes.Equal(tc.got, want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, want)
		}
	}
}

func TestReadPacket(t *testing.T) {
	var in []byte
	in = appendPublish(in, 7, "u/1", bytes.Repeat([]byte{1}, 300))
	in = appendPuback(in, 8)
	rd := bufio.NewReader(bytes.NewReader(in))
	p, buf, err := readPacket(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, payload, err := p.publish()
	if err != nil || p.kind() != typePublish || id != 7 || len(payload) != 300 {
		t.Fatalf("PUBLISH read as type %d id %d payload %d bytes, error %v", p.kind(), id, len(payload), err)
	}
	p, _, err = readPacket(rd, buf)
	if id, perr := p.packetID(); err != nil || perr != nil || p.kind() != typePuback || id != 8 {
		t.Fatalf("PUBACK read as type %d id %d, errors %v %v", p.kind(), id, err, perr)
	}
	if _, _, err := readPacket(rd, buf); err != io.EOF {
		t.Errorf("after the last packet: %v, want EOF", err)
	}

	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"five bytes of length", []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, errMalformed},
		{"over the limit", appendHeader(nil, 0x30, maxRemaining+1), errTooLarge},
		{"cut short", []byte{0x40, 0x02, 0x00}, io.ErrUnexpectedEOF},
	} {
		if _, _, err := readPacket(bufio.NewReader(bytes.NewReader(tc.in)), nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, body := range [][]byte{{0x00}, {0x00, 0x05, 'u'}, {0x00, 0x01, 'u', 0x00}} {
		if _, _, err := (packet{header: 0x32, body: body}).publish(); !errors.Is(err, errMalformed) {
			t.Errorf("PUBLISH body % x: %v, want malformed", body, err)
		}
	}
}

// FuzzReadPacket: no input makes the reader or the PUBLISH parser panic or
// return a payload outside the packet.
func FuzzReadPacket(f *testing.F) {
	f.Add(appendPublish(nil, 1, "u/1", []byte("0123456789abcdef")))
	f.Add(appendPuback(nil, 3))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, in []byte) {
		rd := bufio.NewReader(bytes.NewReader(in))
		var buf []byte
		for {
			p, b, err := readPacket(rd, buf)
			buf = b
			if err != nil {
				return
			}
			if _, payload, err := p.publish(); err == nil && len(payload) > len(p.body) {
				t.Fatalf("payload of %d bytes from a body of %d", len(payload), len(p.body))
			}
		}
	})
}
