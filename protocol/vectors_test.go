package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The -update flag regenerates testdata/vectors.json:
//
//	go test ./protocol -run Vectors -update
//
// It is defined only if no other test file of this package defined it first,
// so two files wanting -update do not panic on a duplicate flag.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files such as testdata/vectors.json")
	}
}

// vectorsUpdate reports whether -update was given.
func vectorsUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const vectorsPath = "testdata/vectors.json"

// The people and things in the vectors. Ids of seven digits are what a real
// deployment has; from 2,097,152 up they take four varint bytes.
const (
	alice = 8765432 // the sender in most vectors
	bob   = 7654321 // the recipient
	carol = 1234567
	dave  = 2345678
	team  = 5550001 // a group
)

// vectorTime is 2026-11-26T18:42:07Z: as a frame timestamp (seconds since
// 2025-01-01) and as WELCOME.Time (milliseconds since the Unix epoch).
const (
	vectorStamp  = 60028927
	vectorMillis = 1795718527000
)

// opaque returns n bytes that look like ciphertext: the server never reads
// bodies and tokens, so their content does not matter, only their length.
func opaque(label string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(label + string(rune('0'+i))))
		out = append(out, h[:]...)
	}
	return out[:n]
}

type vectorCase struct {
	name, note string
	v          frameValue
}

// vectorCases are the valid frames of vectors.json, in the order of the file.
func vectorCases() []vectorCase {
	body := opaque("body", 100)
	body2 := opaque("body2", 100)
	body3 := opaque("body3", 100)
	token := opaque("token", 48)
	return []vectorCase{
		{"LOGIN first", "no ping wish, no dictionary, nothing received yet", &Login{Token: token}},
		{"LOGIN resume", "asks for 60 s pings and dictionary 1; already has entries up to seq 4320",
			&Login{Token: token, Ping: 60, Dict: 1, Ack: 4320}},
		{"WELCOME", "", &Welcome{Version: 1, User: bob, Time: vectorMillis, Ping: 60, Dict: 1,
			MaxFrame: MaxFrame, Window: 64, Last: 0}},
		{"WELCOME with entries waiting", "no compression; the mailbox's newest seq is 4357",
			&Welcome{Version: 1, User: bob, Time: vectorMillis, Ping: 240, Dict: 0, MaxFrame: MaxFrame,
				Window: 64, Last: 4357}},
		{"SEND 1:1", "", &Send{MsgID: 1234, To: bob, Body: body}},
		{"SEND to a group", "flag A", &Send{MsgID: 1235, To: team, Group: true, Body: body2}},
		{"SEND retry", "flag B: SEND 1:1 sent again after the connection dropped before its ACCEPT",
			&Send{MsgID: 1234, To: bob, Retry: true, Body: body}},
		{"SEND empty body", "", &Send{MsgID: 1, To: bob, Body: []byte{}}},
		{"ACCEPT one", "", &Accept{MsgID: 1234}},
		{"ACCEPT run", "flag A: ids 1234 through 1243", &Accept{MsgID: 1234, More: 9}},
		{"ACCEPT group created", "Ref is the new group's id", &Accept{MsgID: 1236, Ref: team}},
		{"ACCEPT run with ref", "flag A and a trailing ref; ref belongs to msg_id, and servers do not coalesce an ACCEPT that carries one", &Accept{MsgID: 1236, More: 1, Ref: team}},
		{"REFUSE retry later", "", &Refuse{MsgID: 1234, Code: CodeRetryLater, RetryAfter: 2000}},
		{"REFUSE mailbox full", "", &Refuse{MsgID: 1234, Code: CodeMailboxFull, RetryAfter: 60000}},
		{"REFUSE not member", "do not retry unchanged", &Refuse{MsgID: 1235, Code: CodeNotMember}},
		{"REFUSE with reason", "the rest of the payload after retry_after is a UTF-8 reason, as in ERROR",
			&Refuse{MsgID: 1237, Code: CodeForbidden, Reason: "add needs an admin"}},
		{"DELIVER live", "no time: the client stamps it", &Deliver{Seq: 4321, From: alice, MsgID: 1234, Body: body}},
		{"DELIVER stored", "flag B: time follows", &Deliver{Seq: 4321, From: alice, MsgID: 1234,
			Time: vectorStamp, Body: body}},
		{"DELIVER group live", "flag A: group follows", &Deliver{Seq: 4322, From: alice, MsgID: 1235,
			Group: team, Body: body2}},
		{"DELIVER group stored", "flags A and B", &Deliver{Seq: 4322, From: alice, MsgID: 1235,
			Group: team, Time: vectorStamp, Body: body2}},
		{"BATCH mixed", "entries with seq 4321…4325; the second DELIVER has from = 0 on the wire",
			&batchFrame{FirstSeq: 4321, Entries: []batchEntry{
				{Deliver: &Deliver{Seq: 4321, From: alice, MsgID: 1234, Time: vectorStamp, Body: body}},
				{Deliver: &Deliver{Seq: 4322, From: alice, MsgID: 1235, Group: team, Time: vectorStamp, Body: body2}},
				{Receipt: &Receipt{Seq: 4323, MsgID: 77, More: 2}},
				{GroupEvent: &GroupEvent{Seq: 4324, Group: team, Actor: alice, Op: GroupAdd,
					Time: vectorStamp, Members: []uint64{dave}}},
				{Deliver: &Deliver{Seq: 4325, From: carol, MsgID: 9, Time: vectorStamp, Body: body3}},
			}}},
		{"ACK", "", &Ack{Seq: 4321}},
		{"RECEIPT delivered", "", &Receipt{Seq: 987, MsgID: 1234}},
		{"RECEIPT read", "flag A", &Receipt{Seq: 988, MsgID: 1234, Read: true}},
		{"RECEIPT delivered run", "flag B: ids 1234 through 1243", &Receipt{Seq: 989, MsgID: 1234, More: 9}},
		{"RECEIPT group read run", "flags A and B, by a member", &Receipt{Seq: 990, MsgID: 1235, More: 1,
			Read: true, By: bob}},
		{"RECEIPT expired", "flag B; by names the recipient, then kind 1: ids 1236 through 1238 expired unfetched",
			&Receipt{Seq: 991, MsgID: 1236, More: 2, By: bob, Expired: true}},
		{"READ", "", &Read{To: alice, MsgID: 1234}},
		{"READ group run", "flags A and B", &Read{To: alice, MsgID: 1235, More: 4, Group: true}},
		{"SIGNAL typing", "client to server: for bob", &Signal{Peer: bob, Kind: SignalTyping}},
		{"SIGNAL group typing", "client to server: flag A, no peer", &Signal{Kind: SignalTyping, Group: team}},
		{"SIGNAL group typing relayed", "server to client: from alice, in the group",
			&Signal{Peer: alice, Kind: SignalTyping, Group: team}},
		{"GROUP create", "", &Group{MsgID: 1236, Op: GroupCreate, Members: []uint64{bob, carol}}},
		{"GROUP add", "", &Group{MsgID: 1237, Op: GroupAdd, Group: team, Members: []uint64{dave}}},
		{"GROUP leave", "no members", &Group{MsgID: 1238, Op: GroupLeave, Group: team}},
		{"GROUP_EVENT live", "", &GroupEvent{Seq: 4326, Group: team, Actor: alice, Op: GroupRemove,
			Members: []uint64{carol}}},
		{"GROUP_EVENT stored", "flag B", &GroupEvent{Seq: 4326, Group: team, Actor: alice, Op: GroupCreate,
			Time: vectorStamp, Members: []uint64{bob, carol}}},
		{"PING", "", pingFrame{}},
		{"PONG", "", pongFrame{}},
		{"GOAWAY", "", &GoAway{After: 5000, Code: CodeShuttingDown}},
		{"GOAWAY moved", "the answer to a LOGIN at a node that is not the user's home: reconnect to addr after 0–100 ms (8.10)",
			&GoAway{After: 100, Code: CodeMoved, Addr: "10.0.2.7:7000"}},
		{"ERROR with reason", "", &Error{Code: CodeBadToken, Reason: "token does not verify"}},
		{"ERROR without reason", "", &Error{Code: CodeSlowConsumer}},
	}
}

// compressedCases are frames sent compressed with dictionary 1. Their
// fields are the inflated frame's; vectors.json also gives its hex.
func compressedCases() []vectorCase {
	return []vectorCase{
		{"SEND compressed", "flag C: a plaintext body (a bot, say) compressed with dictionary 1",
			&Send{MsgID: 1239, To: bob, Body: []byte(plainBodies[0])}},
		{"BATCH compressed", "flag C on the BATCH: a backlog of plaintext messages compressed as a whole",
			&batchFrame{FirstSeq: 4331, Entries: plainBatch(4331)}},
	}
}

// plainBodies are unencrypted chat messages, the kind of payload that
// compression is for (encrypted bodies never shrink).
var plainBodies = []string{
	"Hey! Are we still on for dinner tonight? I booked a table at 8 at the Italian place near the station.",
	"Yes! See you there. Should I bring the book you lent me last month?",
	"Sure, bring it. And tell Dave, he wanted to come too if he finishes work on time.",
	"Your verification code is 482913. It expires in 10 minutes. Do not share it with anyone.",
}

func plainBatch(first uint64) []batchEntry {
	var es []batchEntry
	for i, b := range plainBodies {
		from := uint64(alice)
		if i == 3 {
			from = carol
		}
		es = append(es, batchEntry{Deliver: &Deliver{Seq: first + uint64(i), From: from, MsgID: 1300 + uint64(i),
			Time: vectorStamp, Body: []byte(b)}})
	}
	return es
}

// frameHex encodes one frame of type t for an invalid vector.
func frameHex(t Type, flags byte, payload ...[]byte) string {
	return hex.EncodeToString(AppendFrame(nil, t, flags, bytes.Join(payload, nil)))
}

// uv is a varint field.
func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

func raw(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

type badCase struct {
	Name  string `json:"name"`
	Input string `json:"input"`          // "frame" or "preface"
	Dict  uint32 `json:"dict,omitempty"` // the dictionary negotiated, for compressed frames
	Hex   string `json:"hex"`
	Error string `json:"error"`
}

// invalidCases are the inputs every decoder must refuse, with the error a
// peer is told (or INCOMPLETE: wait for more bytes).
func invalidCases() []badCase {
	send := (&Send{MsgID: 1234, To: bob, Body: opaque("body", 100)}).Append(nil)
	many := make([][]byte, 0, MaxGroupMembers+1)
	for range MaxGroupMembers + 1 {
		many = append(many, uv(1))
	}
	deliver := func(flags byte, fields ...[]byte) []byte {
		return AppendFrame(nil, TypeDeliver, flags, bytes.Join(fields, nil))
	}
	f := func(name, hex, err string) badCase { return badCase{Name: name, Input: "frame", Hex: hex, Error: err} }
	p := func(name, hex, err string) badCase {
		return badCase{Name: name, Input: "preface", Hex: hex, Error: err}
	}
	z := func(name, hex, err string) badCase {
		return badCase{Name: name, Input: "frame", Dict: DictV1, Hex: hex, Error: err}
	}
	// small is a valid compressed payload: a magicless zstd frame (single
	// segment, 1-byte content size 8) holding one raw block, the SEND
	// payload msg_id 1234, to bob, body "hi". Each compressed vector below
	// breaks exactly one rule of it (TestVectorsCompressedFaultsStandAlone).
	small := raw("20 08 410000 d209 b197d303 6869")
	return []badCase{
		p("preface: first byte wrong", "48", "PROTOCOL"),
		p("preface: an HTTP request", "47455420", "PROTOCOL"),
		p("preface: wrong magic", "53580100", "PROTOCOL"),
		p("preface: version 0", "53570000", "UNSUPPORTED_VERSION"),
		p("preface: short", "5357", "INCOMPLETE"),

		f("length prefix only", "80", "INCOMPLETE"),
		f("header byte missing", "05", "INCOMPLETE"),
		f("SEND cut short", hex.EncodeToString(send[:20]), "INCOMPLETE"),
		f("zero length", "00", "PROTOCOL"),
		f("non-minimal length prefix", "81000e", "PROTOCOL"),
		f("length 66561 over the server's limit, nothing after the prefix", "818804", "FRAME_TOO_LARGE"),
		f("unfinished length prefix that must exceed the limit", "ffffff", "FRAME_TOO_LARGE"),
		f("unknown type 0x00", "0100", "UNKNOWN_TYPE"),
		f("unknown type 0x12", "0112", "UNKNOWN_TYPE"),
		f("unknown type 0x1f with every flag", "01ff", "UNKNOWN_TYPE"),
		f("flag A on ACK", frameHex(TypeAck, FlagA, uv(4321)), "PROTOCOL"),
		f("flag B on ACCEPT", frameHex(TypeAccept, FlagB, uv(1234)), "PROTOCOL"),
		f("compressed LOGIN", frameHex(TypeLogin, FlagCompressed, uv(0), uv(0), uv(0), uv(0)), "PROTOCOL"),
		f("compressed ACK", frameHex(TypeAck, FlagCompressed, uv(4321)), "PROTOCOL"),
		f("LOGIN token over 512 bytes", frameHex(TypeLogin, 0, uv(513), opaque("t", 513), uv(0), uv(0), uv(0)), "PROTOCOL"),
		f("LOGIN token longer than the payload", frameHex(TypeLogin, 0, uv(48), opaque("t", 10)), "PROTOCOL"),
		f("LOGIN ack missing", frameHex(TypeLogin, 0, uv(2), raw("abcd"), uv(0), uv(0)), "PROTOCOL"),
		f("WELCOME user zero", frameHex(TypeWelcome, 0, uv(1), uv(0), uv(vectorMillis), uv(60), uv(0),
			uv(MaxFrame), uv(64), uv(0)), "PROTOCOL"),
		f("SEND msg_id zero", frameHex(TypeSend, 0, uv(0), uv(bob), raw("6869")), "PROTOCOL"),
		f("SEND to zero", frameHex(TypeSend, 0, uv(1234), uv(0), raw("6869")), "PROTOCOL"),
		f("SEND non-minimal msg_id", frameHex(TypeSend, 0, raw("d28900"), uv(bob), raw("6869")), "PROTOCOL"),
		f("ACCEPT flag A without more", frameHex(TypeAccept, FlagA, uv(1234)), "PROTOCOL"),
		f("ACCEPT more zero", frameHex(TypeAccept, FlagA, uv(1234), uv(0)), "PROTOCOL"),
		f("ACCEPT ref zero", frameHex(TypeAccept, 0, uv(1234), uv(0)), "PROTOCOL"),
		f("ACCEPT trailing bytes", frameHex(TypeAccept, 0, uv(1234), uv(team), uv(1)), "PROTOCOL"),
		f("REFUSE code zero", frameHex(TypeRefuse, 0, uv(1234), uv(0), uv(0)), "PROTOCOL"),
		f("REFUSE code over 16 bits", frameHex(TypeRefuse, 0, uv(1234), uv(1<<16+32), uv(0)), "PROTOCOL"),
		f("REFUSE retry_after over 32 bits", frameHex(TypeRefuse, 0, uv(1234), uv(32), uv(1<<32)), "PROTOCOL"),
		f("REFUSE reason not UTF-8", frameHex(TypeRefuse, 0, uv(1237), uv(37), uv(0), raw("c328")), "PROTOCOL"),
		f("REFUSE reason of 257 bytes", frameHex(TypeRefuse, 0, uv(1237), uv(37), uv(0), []byte(strings.Repeat("x", MaxReason+1))), "PROTOCOL"),
		f("DELIVER seq zero", hex.EncodeToString(deliver(0, uv(0), uv(alice), uv(1234))), "PROTOCOL"),
		f("DELIVER from zero", hex.EncodeToString(deliver(0, uv(4321), uv(0), uv(1234))), "PROTOCOL"),
		f("DELIVER flag A, group zero", hex.EncodeToString(deliver(FlagA, uv(4321), uv(alice), uv(1234), uv(0))), "PROTOCOL"),
		f("DELIVER flag B, time zero", hex.EncodeToString(deliver(FlagB, uv(4321), uv(alice), uv(1234), uv(0))), "PROTOCOL"),
		f("DELIVER time over 32 bits", hex.EncodeToString(deliver(FlagB, uv(4321), uv(alice), uv(1234), uv(1<<32))), "PROTOCOL"),
		f("ACK empty", frameHex(TypeAck, 0), "PROTOCOL"),
		f("ACK seq zero", frameHex(TypeAck, 0, uv(0)), "PROTOCOL"),
		f("ACK non-minimal seq", frameHex(TypeAck, 0, raw("e100")), "PROTOCOL"),
		f("ACK trailing byte", frameHex(TypeAck, 0, uv(4321), uv(1)), "PROTOCOL"),
		f("ACK seq varint overflows", frameHex(TypeAck, 0, raw("ffffffffffffffffff7f")), "PROTOCOL"),
		f("RECEIPT flag B, more zero", frameHex(TypeReceipt, FlagB, uv(987), uv(1234), uv(0)), "PROTOCOL"),
		f("RECEIPT by zero", frameHex(TypeReceipt, 0, uv(987), uv(1234), uv(0)), "PROTOCOL"),
		f("RECEIPT kind 2", frameHex(TypeReceipt, 0, uv(991), uv(1236), uv(bob), uv(2)), "PROTOCOL"),
		f("RECEIPT read and expired", frameHex(TypeReceipt, FlagA, uv(991), uv(1236), uv(bob), uv(ReceiptExpired)), "PROTOCOL"),
		f("RECEIPT expired, by zero", frameHex(TypeReceipt, 0, uv(991), uv(1236), uv(0), uv(ReceiptExpired)), "PROTOCOL"),
		f("RECEIPT expired with trailing bytes", frameHex(TypeReceipt, 0, uv(991), uv(1236), uv(bob), uv(ReceiptExpired), uv(1)), "PROTOCOL"),
		f("READ trailing bytes", frameHex(TypeRead, 0, uv(alice), uv(1234), uv(4)), "PROTOCOL"),
		f("SIGNAL to no one", frameHex(TypeSignal, 0, uv(0), uv(uint64(SignalTyping))), "PROTOCOL"),
		f("GROUP op 0", frameHex(TypeGroup, 0, uv(1236), []byte{0}, uv(team)), "PROTOCOL"),
		f("GROUP op 7", frameHex(TypeGroup, 0, uv(1236), []byte{7}, uv(team)), "PROTOCOL"),
		f("GROUP create with a group id", frameHex(TypeGroup, 0, uv(1236), []byte{1}, uv(team), uv(bob)), "PROTOCOL"),
		f("GROUP add without a group id", frameHex(TypeGroup, 0, uv(1237), []byte{2}, uv(0), uv(bob)), "PROTOCOL"),
		f("GROUP member zero", frameHex(TypeGroup, 0, uv(1237), []byte{2}, uv(team), uv(0)), "PROTOCOL"),
		f("GROUP 1025 members", frameHex(TypeGroup, 0, uv(1237), []byte{2}, uv(team), bytes.Join(many, nil)), "PROTOCOL"),
		f("GROUP_EVENT actor zero", frameHex(TypeGroupEvent, 0, uv(4326), uv(team), uv(0), []byte{2}), "PROTOCOL"),
		f("GROUP_EVENT op missing", frameHex(TypeGroupEvent, 0, uv(4326), uv(team), uv(alice)), "PROTOCOL"),
		f("PING with a payload", frameHex(TypePing, 0, uv(1)), "PROTOCOL"),
		f("GOAWAY code over 16 bits", frameHex(TypeGoAway, 0, uv(5000), uv(1<<16+20)), "PROTOCOL"),
		f("GOAWAY MOVED without addr", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved))), "PROTOCOL"),
		f("GOAWAY addr empty", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved)), uv(0)), "PROTOCOL"),
		f("GOAWAY addr of 256 bytes", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved)), uv(MaxAddr+1),
			[]byte(strings.Repeat("a", MaxAddr-3)+":700")), "PROTOCOL"),
		f("GOAWAY addr longer than the payload", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved)), uv(20), []byte("10.0.2.7:7000")), "PROTOCOL"),
		f("GOAWAY addr not UTF-8", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved)), uv(6), raw("c328"), []byte(":700")), "PROTOCOL"),
		f("GOAWAY addr with a NUL", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved)), uv(6), raw("6100"), []byte(":700")), "PROTOCOL"),
		f("GOAWAY trailing bytes after addr", frameHex(TypeGoAway, 0, uv(100), uv(uint64(CodeMoved)), uv(6), []byte("a:7000"), uv(1)), "PROTOCOL"),
		f("ERROR code zero", frameHex(TypeError, 0, uv(0)), "PROTOCOL"),
		f("ERROR reason not UTF-8", frameHex(TypeError, 0, uv(8), raw("c328")), "PROTOCOL"),
		f("ERROR reason of 257 bytes", frameHex(TypeError, 0, uv(8), []byte(strings.Repeat("x", MaxReason+1))), "PROTOCOL"),
		f("BATCH first_seq zero", frameHex(TypeBatch, 0, uv(0), deliver(0, uv(alice), uv(1))), "PROTOCOL"),
		f("BATCH without entries", frameHex(TypeBatch, 0, uv(4321)), "PROTOCOL"),
		f("BATCH first DELIVER has from 0", frameHex(TypeBatch, 0, uv(4321), deliver(0, uv(0), uv(1))), "PROTOCOL"),
		f("BATCH holding a SEND", frameHex(TypeBatch, 0, uv(4321), AppendFrame(nil, TypeSend, 0, raw("0102"))), "PROTOCOL"),
		f("BATCH holding an unknown type", frameHex(TypeBatch, 0, uv(4321), raw("0112")), "UNKNOWN_TYPE"),
		f("BATCH entry compressed", frameHex(TypeBatch, 0, uv(4321), deliver(FlagCompressed, uv(alice), uv(1))), "PROTOCOL"),
		f("BATCH entry cut short", frameHex(TypeBatch, 0, uv(4321), deliver(0, uv(alice), uv(1), raw("abcdef"))[:5]), "PROTOCOL"),
		f("BATCH RECEIPT entry with trailing bytes", frameHex(TypeBatch, 0, uv(4321),
			AppendFrame(nil, TypeReceipt, 0, bytes.Join([][]byte{uv(1234), uv(bob), uv(ReceiptExpired), uv(1)}, nil))), "PROTOCOL"),
		f("compressed SEND without a negotiated dictionary", frameHex(TypeSend, FlagCompressed, small), "DECOMPRESSION"),
		z("compressed SEND inflating to 1,000,000 bytes", frameHex(TypeSend, FlagCompressed, rleSend(1_000_000)), "DECOMPRESSION"),
		z("compressed SEND inflating to 66,560 bytes, a frame one byte over the limit", frameHex(TypeSend, FlagCompressed, rleSend(MaxFrame)), "DECOMPRESSION"),
		z("compressed SEND, reserved bit in the zstd header", frameHex(TypeSend, FlagCompressed, []byte{small[0] | 0x08}, small[1:]), "DECOMPRESSION"),
		z("compressed SEND naming a zstd dictionary", frameHex(TypeSend, FlagCompressed, []byte{small[0] | 0x01, zstdDictID}, small[1:]), "DECOMPRESSION"),
		z("compressed SEND, bytes after the zstd frame", frameHex(TypeSend, FlagCompressed, small, raw("00")), "DECOMPRESSION"),
		z("compressed ACK (flag not allowed)", frameHex(TypeAck, FlagCompressed, raw("20 01 090000 01")), "PROTOCOL"),
	}
}

type vectorFrame struct {
	Name     string          `json:"name"`
	Type     string          `json:"type"`
	Note     string          `json:"note,omitempty"`
	Dict     uint32          `json:"dict,omitempty"`     // compressed with this dictionary
	Hex      string          `json:"hex"`                // the frame as sent
	Inflated string          `json:"inflated,omitempty"` // a compressed frame, inflated
	Fields   json.RawMessage `json:"fields"`
}

type vectorFile struct {
	About    string        `json:"about"`
	MaxFrame int           `json:"max_frame"`
	Frames   []vectorFrame `json:"frames"`
	Invalid  []badCase     `json:"invalid"`
	Tokens   []vectorToken `json:"tokens"`
}

// vectorToken is a login token minted from fixed claims, for an operator's
// backend that mints tokens in another language. The protocol carries
// tokens as opaque bytes; package token defines them, and its
// vectors_test.go checks these against its Mint, Parse and Verify.
type vectorToken struct {
	Name   string `json:"name"`
	Secret string `json:"secret"` // hex, as on the keys file's line "<key_id> <secret>"
	KeyID  uint32 `json:"key_id"`
	User   uint64 `json:"user"`
	Device uint32 `json:"device"`
	Expiry uint64 `json:"expiry"` // Unix seconds
	Hex    string `json:"hex"`    // the token: what `switchboard token` prints; LOGIN carries these bytes
}

// tokenCases are the token vectors: the secret is 32 bytes 00 01 … 1f.
func tokenCases() []vectorToken {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	ts := []vectorToken{
		{Name: "token for bob", KeyID: 1, User: bob, Device: 1, Expiry: vectorMillis/1000 + 30*24*3600},
		{Name: "token signed with key 2", KeyID: 2, User: carol, Device: 3, Expiry: vectorMillis / 1000},
	}
	for i := range ts {
		ts[i].Secret = hex.EncodeToString(secret)
		ts[i].Hex = hex.EncodeToString(mintToken(secret, ts[i]))
	}
	return ts
}

// mintToken spells out the token layout of docs/PROTOCOL.md 8.1:
// 0x01 | key_id | user | device | expiry (varints) | the first 16 bytes of
// HMAC-SHA256(secret, everything before them).
func mintToken(secret []byte, t vectorToken) []byte {
	b := []byte{1}
	for _, x := range []uint64{uint64(t.KeyID), t.User, uint64(t.Device), t.Expiry} {
		b = binary.AppendUvarint(b, x)
	}
	h := hmac.New(sha256.New, secret)
	h.Write(b)
	return h.Sum(b)[:len(b)+16]
}

const vectorsAbout = "Switchboard protocol version 1 golden vectors; see docs/PROTOCOL.md. " +
	"frames: each hex is one whole frame (or the 4-byte preface); decoding it must give fields, " +
	"and encoding fields must give exactly hex. Byte fields are hex strings; ids, seqs and times are numbers. " +
	"BATCH entries list their seq and resolved sender; on the wire a DELIVER entry writes from = 0 when its " +
	"sender is the previous DELIVER entry's. invalid: each hex must be refused with error (a Code name, or " +
	"INCOMPLETE: more bytes needed) when read with a frame limit of max_frame bytes. A frame with dict was " +
	"compressed with that dictionary: inflating hex must give inflated, which decodes to fields; another " +
	"zstd encoder may compress differently, so only the Go reference must reproduce hex from fields. " +
	"An invalid input with dict is read after negotiating that dictionary, one without after negotiating none. " +
	"tokens: login tokens (docs/PROTOCOL.md 8.1), minted from secret (hex) and the numbers; hex is the token's bytes."

// generateVectors builds vectors.json from the cases.
func generateVectors(t *testing.T) []byte {
	t.Helper()
	file := vectorFile{About: vectorsAbout, MaxFrame: MaxFrame, Invalid: invalidCases(), Tokens: tokenCases()}
	for _, pc := range []struct {
		name, note   string
		ver, transpt byte
	}{
		{"PREFACE plain", "version 1, transport 0", Version, TransportPlain},
		{"PREFACE noise", "transport 1: a Noise XX handshake follows (PROTOCOL.md 3.1); a server that does not offer it answers ERROR UNSUPPORTED_TRANSPORT", Version, TransportNoiseXX},
	} {
		fs, _ := json.Marshal(fields{{"version", pc.ver}, {"transport", pc.transpt}})
		file.Frames = append(file.Frames, vectorFrame{Name: pc.name, Type: "PREFACE", Note: pc.note,
			Hex: hex.EncodeToString(AppendPreface(nil, pc.ver, pc.transpt)), Fields: fs})
	}
	for _, c := range vectorCases() {
		fs, err := json.Marshal(fieldsOf(c.v))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		file.Frames = append(file.Frames, vectorFrame{Name: c.name, Type: typeOf(c.v).String(), Note: c.note,
			Hex: hex.EncodeToString(c.v.Append(nil)), Fields: fs})
	}
	codec, _ := Lookup(DictV1)
	for _, c := range compressedCases() {
		fs, err := json.Marshal(fieldsOf(c.v))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		plain := c.v.Append(nil)
		f, _, _ := ReadFrame(plain, len(plain))
		z := codec.AppendFrame(nil, f.Type, f.Flags, f.Payload)
		if zf, _, _ := ReadFrame(z, len(z)); !zf.Has(FlagCompressed) {
			t.Fatalf("%s: the codec did not compress it", c.name)
		}
		file.Frames = append(file.Frames, vectorFrame{Name: c.name, Type: typeOf(c.v).String(), Note: c.note,
			Dict: DictV1, Hex: hex.EncodeToString(z), Inflated: hex.EncodeToString(plain), Fields: fs})
	}
	out, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestVectorsFile checks that testdata/vectors.json is what the cases above
// generate (run with -update after changing them).
func TestVectorsFile(t *testing.T) {
	want := generateVectors(t)
	if vectorsUpdate() {
		if err := os.WriteFile(vectorsPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", vectorsPath)
		return
	}
	got, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (generate it with: go test ./protocol -run Vectors -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: go test ./protocol -run Vectors -update", vectorsPath)
	}
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestVectorsDecodeEncode reads vectors.json as another implementation
// would: every frame decodes to its fields and its fields encode to exactly
// its bytes.
func TestVectorsDecodeEncode(t *testing.T) {
	file := loadVectors(t)
	seen := map[string]bool{}
	for _, vf := range file.Frames {
		t.Run(vf.Name, func(t *testing.T) {
			b, err := hex.DecodeString(vf.Hex)
			if err != nil {
				t.Fatal(err)
			}
			seen[vf.Type] = true
			if vf.Type == "PREFACE" {
				var want struct{ Version, Transport byte }
				if err := json.Unmarshal(vf.Fields, &want); err != nil {
					t.Fatal(err)
				}
				ver, tr, err := ReadPreface(b)
				if err != nil || ver != want.Version || tr != want.Transport || len(b) != PrefaceLen {
					t.Fatalf("ReadPreface(%x) = %d, %d, %v; want %+v", b, ver, tr, err, want)
				}
				if got := AppendPreface(nil, want.Version, want.Transport); !bytes.Equal(got, b) {
					t.Fatalf("AppendPreface = %x, want %x", got, b)
				}
				return
			}
			if vf.Dict != 0 {
				b = checkCompressed(t, vf, b)
			}
			got, err := decodeFrame(b, MaxServerFrame)
			if err != nil {
				t.Fatalf("decode %s: %v", vf.Hex, err)
			}
			if typ := typeOf(got).String(); typ != vf.Type {
				t.Fatalf("type %s, want %s", typ, vf.Type)
			}
			gotFields, _ := json.Marshal(fieldsOf(got))
			if !jsonEqual(gotFields, vf.Fields) {
				t.Errorf("decoded fields\n got %s\nwant %s", gotFields, vf.Fields)
			}
			var typ Type
			for x := TypeLogin; x <= typeMax; x++ {
				if x.String() == vf.Type {
					typ = x
				}
			}
			want := newValue(typ)
			if err := setFields(want, vf.Fields); err != nil {
				t.Fatal(err)
			}
			if enc := hex.EncodeToString(want.Append(nil)); enc != hex.EncodeToString(b) {
				t.Errorf("encoded fields\n got %s\nwant %x", enc, b)
			}
		})
	}
	for x := TypeLogin; x <= typeMax; x++ {
		if !seen[x.String()] {
			t.Errorf("no vector for %v", x)
		}
	}
}

// TestVectorsInvalid checks that every invalid input is refused with the
// error the file names, and that CodeOf maps it to that code.
func TestVectorsInvalid(t *testing.T) {
	file := loadVectors(t)
	if file.MaxFrame != MaxFrame {
		t.Fatalf("max_frame %d, want %d", file.MaxFrame, MaxFrame)
	}
	for _, bc := range file.Invalid {
		t.Run(bc.Name, func(t *testing.T) {
			b, err := hex.DecodeString(bc.Hex)
			if err != nil {
				t.Fatal(err)
			}
			switch bc.Input {
			case "preface":
				_, _, err = ReadPreface(b)
			case "frame":
				_, err = decodeWire(b, file.MaxFrame, bc.Dict)
			default:
				t.Fatalf("input %q", bc.Input)
			}
			if err == nil {
				t.Fatalf("%s accepted", bc.Hex)
			}
			if got := errName(err); got != bc.Error {
				t.Fatalf("error %v is %s, want %s", err, got, bc.Error)
			}
		})
	}
}

// checkCompressed inflates a compressed vector, checks it against its
// inflated hex, checks the reference encoder reproduces the compressed hex,
// and returns the inflated frame.
func checkCompressed(t *testing.T, vf vectorFrame, b []byte) []byte {
	t.Helper()
	codec, ok := Lookup(vf.Dict)
	if !ok {
		t.Fatalf("no dictionary %d", vf.Dict)
	}
	f, n, err := ReadFrame(b, MaxServerFrame)
	if err != nil || n != len(b) || !f.Has(FlagCompressed) {
		t.Fatalf("ReadFrame: %v, n %d of %d, flags %02x", err, n, len(b), f.Flags)
	}
	in, err := codec.Inflate(f, nil, MaxServerFrame)
	if err != nil {
		t.Fatal(err)
	}
	plain := AppendFrame(nil, in.Type, in.Flags, in.Payload)
	if got := hex.EncodeToString(plain); got != vf.Inflated {
		t.Fatalf("inflated\n got %s\nwant %s", got, vf.Inflated)
	}
	if z := codec.AppendFrame(nil, in.Type, in.Flags, in.Payload); !bytes.Equal(z, b) {
		t.Errorf("the reference encoder compresses to\n%x, want\n%x", z, b)
	}
	return plain
}

// decodeWire reads one frame as a peer that negotiated dictionary dict (0:
// none) does: split, inflate if compressed, decode.
func decodeWire(b []byte, max int, dict uint32) (frameValue, error) {
	f, n, err := ReadFrame(b, max)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%d bytes after the frame", len(b)-n)
	}
	codec, _ := Lookup(dict)
	if f, err = codec.Inflate(f, nil, max); err != nil {
		return nil, err
	}
	v := newValue(f.Type)
	if err := v.Decode(f); err != nil {
		return nil, err
	}
	return v, nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
