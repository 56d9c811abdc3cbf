// Package dictgen builds the corpus the compression dictionary is trained on,
// trains it, and makes the sample frames the compression tests and benchmarks
// measure. Everything is deterministic: the same seed gives the same bytes, so
// `go run ./protocol/internal/dictgen/cmd` rebuilds protocol/dict/v1.bin
// exactly (a test in package protocol pins its SHA-256).
//
// The corpus is made of payloads (the bytes after the header byte) of real
// frames produced by the protocol package's encoders, in the proportions a
// gateway sends and receives them:
//
//   - DELIVER and SEND with end-to-end encrypted bodies: Signal-like
//     envelopes (a version byte, protobuf-style tags, a 33-byte ratchet key,
//     counters, ciphertext padded to 16 bytes, an 8-byte MAC). Only the few
//     structural bytes compress.
//   - DELIVER and SEND with plaintext bodies, for deployments that do not
//     encrypt: short chat text from a word list, bot and system notices, small
//     JSON documents.
//   - BATCH payloads of offline backlogs (DELIVER, RECEIPT and GROUP_EVENT
//     entries with increasing seqs and timestamps) and GROUP_EVENT frames with
//     member lists.
package dictgen

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"strings"

	"switchboard/protocol"
)

// Seeds of the training corpus and of the held-out samples tests measure.
// They differ so that a figure is never measured on what the dictionary saw.
const (
	TrainSeed = 1
	TestSeed  = 2
)

// Class names a kind of sample frame in the figures.
type Class int

// Sample classes.
const (
	Plaintext  Class = iota // DELIVER of a stored entry with a plaintext body
	Ciphertext              // DELIVER of a stored entry with an encrypted body
	BatchPlain              // BATCH of a backlog: plaintext DELIVERs, RECEIPTs, GROUP_EVENTs
	BatchE2E                // BATCH of a backlog: encrypted DELIVERs, RECEIPTs, GROUP_EVENTs
	GroupEvent              // GROUP_EVENT with a member list
)

// Classes lists every class, in the order of the figures.
var Classes = []Class{Plaintext, Ciphertext, BatchPlain, BatchE2E, GroupEvent}

func (c Class) String() string {
	return [...]string{"plaintext", "ciphertext", "batch_plain", "batch_e2e", "group_event"}[c]
}

// Gen generates frames. It is not safe for concurrent use.
type Gen struct {
	r     *rand.Rand
	users []uint64 // a population of user ids: senders and members
	now   uint32   // a Stamp around which timestamps fall
	bw    protocol.BatchWriter
}

// New returns a generator seeded with seed.
func New(seed uint64) *Gen {
	g := &Gen{r: rand.New(rand.NewPCG(seed, 0x5377697463686264))}
	// Ids of a service with some millions of users: 3 to 4 varint bytes.
	g.users = make([]uint64, 5000)
	for i := range g.users {
		g.users[i] = 1 + g.r.Uint64N(20_000_000)
	}
	// Late 2026: about 60 million seconds after protocol.Epoch.
	g.now = 59_000_000 + g.r.Uint32N(4_000_000)
	return g
}

// Corpus returns n training payloads: a mix of every kind of frame that may
// be compressed, of the sizes they have in practice.
func (g *Gen) Corpus(n int) [][]byte {
	out := make([][]byte, 0, n)
	for len(out) < n {
		var f []byte
		plain := g.r.IntN(2) == 0 // a deployment that does not encrypt
		switch k := g.r.IntN(100); {
		case k < 30:
			f = g.deliver(nil, plain, g.chatLen(plain))
		case k < 45:
			f = g.send(nil, plain, g.chatLen(plain))
		case k < 85:
			f = g.batch(nil, plain, 60+g.r.IntN(4000))
		default:
			f = g.groupEvent(nil, 1+g.r.IntN(60))
		}
		out = append(out, payloadOf(f))
	}
	return out
}

// Sample returns the payload of one frame of class c whose payload is about
// size bytes (exactly size for Plaintext and Ciphertext, at least size for
// batches and GroupEvent), with the frame's type and flags. The payload is
// freshly allocated.
func (g *Gen) Sample(c Class, size int) (protocol.Type, byte, []byte) {
	var f []byte
	switch c {
	case Plaintext, Ciphertext:
		f = g.deliverSized(c == Plaintext, size)
	case BatchPlain, BatchE2E:
		f = g.batch(nil, c == BatchPlain, size)
	case GroupEvent:
		// Member ids take 3 or 4 bytes: guess, then add what is missing.
		for members := max(size/4-4, 1); ; members += (size-len(f))/4 + 1 {
			if f = g.groupEvent(nil, members); len(f) >= size {
				break
			}
		}
	}
	fr, _, err := protocol.ReadFrame(f, len(f))
	if err != nil {
		panic(err)
	}
	return fr.Type, fr.Flags, fr.Payload
}

func payloadOf(frame []byte) []byte {
	f, _, err := protocol.ReadFrame(frame, len(frame))
	if err != nil {
		panic(err)
	}
	return f.Payload
}

// chatLen draws the length of a message body: most chat is short.
func (g *Gen) chatLen(plain bool) int {
	n := 8 + int(g.r.ExpFloat64()*60)
	if !plain {
		n += 60 // the envelope
	}
	return min(n, 3000)
}

func (g *Gen) user() uint64 { return g.users[g.r.IntN(len(g.users))] }

// contact draws a sender with a skew: a few people send most messages.
func (g *Gen) contact() uint64 { return g.users[int(g.r.ExpFloat64()*20)%len(g.users)] }

func (g *Gen) group() uint64 { return 1 + g.r.Uint64N(2_000_000) }

func (g *Gen) body(plain bool, n int) []byte {
	if plain {
		return g.plaintext(n)
	}
	return g.ciphertext(n)
}

func (g *Gen) deliver(dst []byte, plain bool, bodyLen int) []byte {
	d := protocol.Deliver{
		Seq: 1 + g.r.Uint64N(200_000), From: g.contact(), MsgID: 1 + g.r.Uint64N(1_000_000),
		Body: g.body(plain, bodyLen),
	}
	if g.r.IntN(3) == 0 {
		d.Group = g.group()
	}
	if g.r.IntN(2) == 0 {
		d.Time = g.now + g.r.Uint32N(86400)
	}
	return d.Append(dst)
}

// deliverSized returns a stored DELIVER (with a time) whose payload is
// exactly size bytes, or as close above as its fixed fields allow.
func (g *Gen) deliverSized(plain bool, size int) []byte {
	d := protocol.Deliver{
		Seq: 1 + g.r.Uint64N(200_000), From: g.contact(), MsgID: 1 + g.r.Uint64N(1_000_000),
		Time: g.now + g.r.Uint32N(86400),
	}
	fixed := len(d.Append(nil)) - 2 // length prefix (1 byte here) and header byte
	d.Body = g.body(plain, max(size-fixed, 1))
	return d.Append(nil)
}

func (g *Gen) send(dst []byte, plain bool, bodyLen int) []byte {
	s := protocol.Send{MsgID: 1 + g.r.Uint64N(1_000_000), To: g.user(), Body: g.body(plain, bodyLen)}
	if g.r.IntN(3) == 0 {
		s.To, s.Group = g.group(), true
	}
	return s.Append(dst)
}

// batch returns a BATCH frame of a backlog whose payload is at least size
// bytes: messages from a few contacts and groups, receipts for what the user
// sent, group changes, in seq order with timestamps going forward.
func (g *Gen) batch(dst []byte, plain bool, size int) []byte {
	seq := 1 + g.r.Uint64N(200_000)
	t := g.now + g.r.Uint32N(86400)
	w := &g.bw
	w.Reset(seq)
	groups := []uint64{g.group(), g.group()}
	myMsg := 1 + g.r.Uint64N(1_000_000)
	for w.Len() < size {
		t += uint32(g.r.ExpFloat64() * 90)
		switch k := g.r.IntN(100); {
		case k < 65:
			d := protocol.Deliver{Seq: w.NextSeq(), From: g.contact(), MsgID: 1 + g.r.Uint64N(1_000_000), Time: t}
			if g.r.IntN(3) == 0 {
				d.Group = groups[g.r.IntN(len(groups))]
			}
			d.Body = g.body(plain, g.chatLen(plain))
			w.Deliver(&d)
		case k < 93:
			x := protocol.Receipt{Seq: w.NextSeq(), MsgID: myMsg, Read: g.r.IntN(2) == 0}
			if g.r.IntN(3) == 0 {
				x.More = 1 + g.r.Uint64N(5)
			}
			if g.r.IntN(4) == 0 {
				x.By = g.user()
			}
			myMsg += x.More + 1
			w.Receipt(&x)
		default:
			e := protocol.GroupEvent{
				Seq: w.NextSeq(), Group: groups[g.r.IntN(len(groups))], Actor: g.contact(),
				Op: protocol.GroupOp(1 + g.r.IntN(6)), Time: t, Members: g.members(1 + g.r.IntN(4)),
			}
			if e.Op == protocol.GroupLeave {
				e.Members = nil
			}
			w.GroupEvent(&e)
		}
	}
	return w.Append(dst)
}

func (g *Gen) groupEvent(dst []byte, members int) []byte {
	e := protocol.GroupEvent{
		Seq: 1 + g.r.Uint64N(200_000), Group: g.group(), Actor: g.user(),
		Op: protocol.GroupAdd, Members: g.members(members),
	}
	if members > 8 {
		e.Op = protocol.GroupCreate
	}
	if g.r.IntN(2) == 0 {
		e.Time = g.now + g.r.Uint32N(86400)
	}
	return e.Append(dst)
}

func (g *Gen) members(n int) []uint64 {
	m := make([]uint64, n)
	for i := range m {
		m[i] = g.user()
	}
	return m
}

// ciphertext returns an n-byte body shaped like a Signal-protocol message:
//
//	version 0x33 | 0x0a 0x21 0x05 ratchet_key(32) | 0x10 counter | 0x18 prev |
//	0x22 len ciphertext | mac(8)
//
// with a PreKey wrapper (registration id, pre-key ids, base and identity
// keys) one time in ten. Keys, ciphertext and MAC are random bytes.
func (g *Gen) ciphertext(n int) []byte {
	b := make([]byte, 0, n+96)
	if g.r.IntN(10) == 0 && n > 160 {
		b = append(b, 0x33, 0x28)
		b = binary.AppendUvarint(b, 1+g.r.Uint64N(16380))
		b = append(b, 0x08)
		b = binary.AppendUvarint(b, 1+g.r.Uint64N(1<<24))
		b = append(b, 0x30)
		b = binary.AppendUvarint(b, 1+g.r.Uint64N(1<<24))
		b = append(b, 0x12, 0x21, 0x05)
		b = g.random(b, 32)
		b = append(b, 0x1a, 0x21, 0x05)
		b = g.random(b, 32)
		b = append(b, 0x22)
		b = binary.AppendUvarint(b, uint64(max(n-len(b)-2, 0)))
	}
	b = append(b, 0x33, 0x0a, 0x21, 0x05)
	b = g.random(b, 32)
	b = append(b, 0x10)
	b = binary.AppendUvarint(b, g.r.Uint64N(200))
	b = append(b, 0x18)
	b = binary.AppendUvarint(b, g.r.Uint64N(200))
	ct := max(n-len(b)-2-8, 0)
	b = append(b, 0x22)
	b = binary.AppendUvarint(b, uint64(ct))
	b = g.random(b, ct+8) // ciphertext and MAC
	if len(b) > n {
		b = b[:n]
	}
	return b
}

func (g *Gen) random(b []byte, n int) []byte {
	for range n {
		b = append(b, byte(g.r.Uint32()))
	}
	return b
}

// plaintext returns an n-byte body of chat text, a bot or system notice, or
// a small JSON document.
func (g *Gen) plaintext(n int) []byte {
	var sb strings.Builder
	switch k := g.r.IntN(100); {
	case k < 70:
		for sb.Len() < n {
			g.sentence(&sb)
		}
	case k < 85:
		for sb.Len() < n {
			g.notice(&sb)
		}
	default:
		for sb.Len() < n {
			g.json(&sb)
		}
	}
	s := sb.String()[:n]
	return []byte(s)
}

func (g *Gen) pick(words []string) string {
	return words[int(g.r.ExpFloat64()*float64(len(words))/5)%len(words)]
}

func (g *Gen) sentence(sb *strings.Builder) {
	if sb.Len() > 0 {
		sb.WriteByte(' ')
	}
	if g.r.IntN(4) == 0 {
		sb.WriteString(g.pick(openers))
		sb.WriteByte(' ')
	}
	n := 1 + g.r.IntN(12)
	for i := range n {
		w := g.pick(words)
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		sb.WriteString(w)
		if i < n-1 {
			sb.WriteByte(' ')
		}
	}
	sb.WriteString(g.pick(enders))
}

func (g *Gen) notice(sb *strings.Builder) {
	if sb.Len() > 0 {
		sb.WriteByte('\n')
	}
	switch g.r.IntN(5) {
	case 0:
		sb.WriteString("Your verification code is " + strconv.Itoa(100000+g.r.IntN(900000)) + ". Do not share it with anyone.")
	case 1:
		sb.WriteString("Reminder: " + g.pick(words) + " " + g.pick(words) + " at " + strconv.Itoa(8+g.r.IntN(12)) + ":" + []string{"00", "15", "30", "45"}[g.r.IntN(4)])
	case 2:
		sb.WriteString("Your order #" + strconv.Itoa(g.r.IntN(10_000_000)) + " has been shipped and will arrive on " + days[g.r.IntN(len(days))] + ".")
	case 3:
		sb.WriteString(names[g.r.IntN(len(names))] + " added " + names[g.r.IntN(len(names))] + " to the group.")
	default:
		sb.WriteString("Build #" + strconv.Itoa(g.r.IntN(100_000)) + " " + []string{"passed", "failed"}[g.r.IntN(2)] + " on branch main (" + strconv.Itoa(g.r.IntN(600)) + "s)")
	}
}

func (g *Gen) json(sb *strings.Builder) {
	sb.WriteString(`{"type":"` + []string{"notification", "alert", "message", "status"}[g.r.IntN(4)] +
		`","id":` + strconv.Itoa(g.r.IntN(1<<30)) + `,"ts":` + strconv.Itoa(1_790_000_000+g.r.IntN(10_000_000)) +
		`,"text":"`)
	n := 2 + g.r.IntN(10)
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(g.pick(words))
	}
	sb.WriteString(`","priority":` + strconv.Itoa(g.r.IntN(3)) + "}")
}

var openers = []string{"hey", "ok", "lol", "haha", "yes", "no", "omg", "btw", "so", "well", "hi", "thanks", "sure", "yeah", "hmm"}

var enders = []string{".", ".", "!", "?", "", " :)", " 😂", " 👍", "...", " ❤️", "!!", " 🙏"}

var names = []string{"Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter"}

var days = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

// words is a list of common words of chat, most frequent first (picks are
// skewed towards the front).
var words = strings.Fields(`
i you the to a it and is that me my we be in so what of for are not just this
have do can on at with was but all your if get like know will no up now one go
out time about here there when how see good love think they got him going them
want really back she he today then see yeah come did too well right day tonight
tomorrow home work call later soon sorry thanks please need let us our been
were would could should dont cant im its thats youre ill ive where why who
more some any much very still also again only even never always maybe ok okay
sure great nice cool fine happy sad tired late early first last next new old
little big long meeting lunch dinner coffee beer party weekend morning night
week month year phone message text photo video picture link game movie show
music song book school class office train bus car flight hotel trip beach
park store shop money pay send take make give tell say said ask look feel
leave stay wait meet bring try find keep start stop help play watch read
write open close sleep eat drink run walk drive buy sell win lose miss hope
guess mean wish remember forget understand believe happen already almost
probably actually literally honestly basically totally definitely exactly
mom dad sister brother friend guys baby babe dude man girl boy family kids
birthday congrats congratulations happy new love miss hug kiss lol haha omg
wtf idk btw tbh imo brb ttyl np thx pls
`)
