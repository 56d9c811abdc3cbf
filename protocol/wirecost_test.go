package protocol

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// The wire cost of a 1:1 text message, measured by encoding the frames:
// every byte of a whole exchange except the 100-byte body, which travels
// twice (up to the server, down to the recipient) in every protocol here.
// Users have seven-digit ids (four varint bytes), message ids and seqs are
// in the two-byte varint range. MQTT 3.1.1 QoS 1 is encoded by hand from the
// spec (sections 2.2, 3.3, 3.4) for the same exchange.
//
//	go test ./protocol -run WireCost -v

const wireBody = 100

// wireStep is one frame of an exchange: who sends it and its bytes.
type wireStep struct {
	what  string
	bytes int
}

type wireRound struct {
	name   string
	msgs   int // messages the round carries
	steps  []wireStep
	bodies int // bodies carried (each crosses two links)
}

func (r wireRound) total() int {
	n := 0
	for _, s := range r.steps {
		n += s.bytes
	}
	return n
}

func (r wireRound) overhead() int { return r.total() - r.bodies*wireBody }

func (r wireRound) perMsg() float64 { return float64(r.overhead()) / float64(r.msgs) }

func step(what string, b []byte) wireStep { return wireStep{what, len(b)} }

// ourIsolated is one message between users who are both online, with the
// sender's delivered receipt and the sender's ACK of that receipt.
func ourIsolated(stored bool) wireRound {
	body := opaque("body", wireBody)
	d := Deliver{Seq: 4321, From: alice, MsgID: 1234, Body: body}
	name := "Switchboard, isolated, live DELIVER (no time)"
	if stored {
		d.Time = vectorStamp
		name = "Switchboard, isolated, stored DELIVER (with time)"
	}
	return wireRound{name: name, msgs: 1, bodies: 2, steps: []wireStep{
		step("SEND     alice → server", (&Send{MsgID: 1234, To: bob, Body: body}).Append(nil)),
		step("ACCEPT   server → alice", (&Accept{MsgID: 1234}).Append(nil)),
		step("DELIVER  server → bob", d.Append(nil)),
		step("ACK      bob → server", (&Ack{Seq: 4321}).Append(nil)),
		step("RECEIPT  server → alice", (&Receipt{Seq: 987, MsgID: 1234}).Append(nil)),
		step("ACK      alice → server (of the receipt)", (&Ack{Seq: 987}).Append(nil)),
	}}
}

// ourBurst is ten messages from alice to bob in quick succession: ten SENDs,
// one coalesced ACCEPT, one BATCH of ten DELIVERs, one ACK, one coalesced
// RECEIPT and the ACK of it.
func ourBurst(stored bool) wireRound {
	const n = 10
	body := opaque("body", wireBody)
	r := wireRound{name: "Switchboard, burst of 10, live (no time)", msgs: n, bodies: 2 * n}
	if stored {
		r.name = "Switchboard, burst of 10, stored (with time)"
	}
	var w BatchWriter
	w.Reset(4321)
	for i := range uint64(n) {
		r.steps = append(r.steps, step("SEND", (&Send{MsgID: 1234 + i, To: bob, Body: body}).Append(nil)))
		d := Deliver{Seq: 4321 + i, From: alice, MsgID: 1234 + i, Body: body}
		if stored {
			d.Time = vectorStamp
		}
		w.Deliver(&d)
	}
	r.steps = append(r.steps,
		step("ACCEPT 1234+9", (&Accept{MsgID: 1234, More: n - 1}).Append(nil)),
		step("BATCH of 10 DELIVERs", w.Append(nil)),
		step("ACK 4330", (&Ack{Seq: 4321 + n - 1}).Append(nil)),
		step("RECEIPT 1234+9", (&Receipt{Seq: 987, MsgID: 1234, More: n - 1}).Append(nil)),
		step("ACK of the receipt", (&Ack{Seq: 987}).Append(nil)),
	)
	return r
}

// mqttPublish encodes an MQTT 3.1.1 PUBLISH at QoS 1: fixed header 0x32,
// remaining length (the spec's variable-length integer), topic name (two-byte
// length, UTF-8), packet identifier (two bytes), payload.
func mqttPublish(topic string, id uint16, payload []byte) []byte {
	rest := 2 + len(topic) + 2 + len(payload)
	b := []byte{0x32}
	for {
		c := byte(rest % 128)
		rest /= 128
		if rest > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if rest == 0 {
			break
		}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	b = binary.BigEndian.AppendUint16(b, id)
	return append(b, payload...)
}

// mqttPuback encodes a PUBACK: 0x40, remaining length 2, packet identifier.
func mqttPuback(id uint16) []byte { return []byte{0x40, 0x02, byte(id >> 8), byte(id)} }

// mqttRound is one message at QoS 1 through a broker: PUBLISH and PUBACK on
// the sender's link, PUBLISH and PUBACK on the recipient's.
func mqttRound(name, topic string) wireRound {
	body := opaque("body", wireBody)
	return wireRound{name: name, msgs: 1, bodies: 2, steps: []wireStep{
		step("PUBLISH  alice → broker", mqttPublish(topic, 1234, body)),
		step("PUBACK   broker → alice", mqttPuback(1234)),
		step("PUBLISH  broker → bob", mqttPublish(topic, 4321, body)),
		step("PUBACK   bob → broker", mqttPuback(4321)),
	}}
}

// mqttWithReceipt adds what Switchboard's RECEIPT gives for free: bob
// publishes a two-byte "delivered 1234" to alice's topic, at QoS 1.
func mqttWithReceipt() wireRound {
	r := mqttRound(`MQTT 3.1.1 QoS 1, topic "u/7654321", + app receipt to "u/8765432"`, "u/7654321")
	receipt := []byte{0x04, 0xd2}
	r.steps = append(r.steps,
		step("PUBLISH  bob → broker (receipt)", mqttPublish("u/8765432", 4322, receipt)),
		step("PUBACK   broker → bob", mqttPuback(4322)),
		step("PUBLISH  broker → alice (receipt)", mqttPublish("u/8765432", 988, receipt)),
		step("PUBACK   alice → broker", mqttPuback(988)),
	)
	return r
}

// TestWireCost computes the table in docs/BENCHMARKS.md and holds the wire
// format to its goals: a whole isolated round, receipt included, costs no
// more than MQTT QoS 1's, and a burst costs less than half of MQTT's per
// message.
func TestWireCost(t *testing.T) {
	isolated, stored := ourIsolated(false), ourIsolated(true)
	burst, burstStored := ourBurst(false), ourBurst(true)
	noReceipt := isolated
	noReceipt.name = "Switchboard, isolated, live, without the receipt leg"
	noReceipt.steps = noReceipt.steps[:4]
	mqtt := mqttRound(`MQTT 3.1.1 QoS 1, topic "u/7654321" (main)`, "u/7654321")
	mqttSender := mqttRound(`MQTT 3.1.1 QoS 1, topic "7654321/8765432" (names the sender)`, "7654321/8765432")
	mqttBare := mqttRound(`MQTT 3.1.1 QoS 1, topic "7654321" (stingiest)`, "7654321")
	mqttBurst := wireRound{name: `MQTT 3.1.1 QoS 1, burst of 10, topic "u/7654321" (nothing coalesces)`, msgs: 10, bodies: 20}
	for range 10 {
		mqttBurst.steps = append(mqttBurst.steps, mqtt.steps...)
	}
	rounds := []wireRound{isolated, stored, noReceipt, burst, burstStored, mqtt, mqttSender, mqttBare, mqttBurst, mqttWithReceipt()}

	// The exact figures are pinned: a change to the encoding shows up here
	// and must be carried into docs/BENCHMARKS.md.
	want := map[string]int{
		isolated.name: 36, stored.name: 40, noReceipt.name: 26, burst.name: 158, burstStored.name: 198,
		mqtt.name: 38, mqttSender.name: 50, mqttBare.name: 34, mqttBurst.name: 380,
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| exchange | msgs | bytes on the wire | overhead | overhead per msg |\n|---|---:|---:|---:|---:|\n")
	for _, r := range rounds {
		fmt.Fprintf(&table, "| %s | %d | %d | %d | %.1f |\n", r.name, r.msgs, r.total(), r.overhead(), r.perMsg())
		if w, ok := want[r.name]; ok && r.overhead() != w {
			t.Errorf("%s: overhead %d, pinned %d", r.name, r.overhead(), w)
		}
	}
	fmt.Fprintf(&table, "\nisolated round, frame by frame:\n")
	for _, s := range isolated.steps {
		fmt.Fprintf(&table, "  %-42s %3d bytes\n", s.what, s.bytes)
	}
	t.Log(table.String())

	if isolated.overhead() > mqtt.overhead() {
		t.Errorf("isolated round with receipt: %d bytes of overhead, MQTT QoS 1: %d", isolated.overhead(), mqtt.overhead())
	}
	if burst.perMsg() >= mqtt.perMsg()/2 {
		t.Errorf("burst: %.1f bytes per message, want under half of MQTT's %.1f", burst.perMsg(), mqtt.perMsg())
	}
}

// TestMQTTEncoding checks the hand encoder against the spec's worked sizes:
// a 2-byte remaining length from 128 bytes on.
func TestMQTTEncoding(t *testing.T) {
	if b := mqttPublish("a/b", 10, []byte{1, 2}); fmt.Sprintf("%x", b) != "3209"+"0003612f62"+"000a"+"0102" {
		t.Fatalf("PUBLISH = %x", b)
	}
	if b := mqttPublish("t", 1, make([]byte, 123)); len(b) != 1+2+128 || b[1] != 0x80 || b[2] != 0x01 {
		t.Fatalf("PUBLISH of remaining length 128 = %x…", b[:4])
	}
	if b := mqttPuback(0x0102); fmt.Sprintf("%x", b) != "40020102" {
		t.Fatalf("PUBACK = %x", b)
	}
}

// Encryption's bytes per record (PROTOCOL.md 3.1): a Noise transport
// message adds its 2-byte length and the 16-byte tag; a TLS 1.3 record its
// 5-byte header, the inner content-type byte and the 16-byte tag.
const (
	noiseRecord = 2 + 16
	tlsRecord   = 5 + 1 + 16
)

// records is how many encrypted records a round takes: one per write.
// Ours writes each step at once, but the burst's ten SENDs go in one write
// (a client writes what it has queued together, and one transport message
// carries them all); MQTT clients write each packet on its own.
func records(r wireRound, burstSends bool) int {
	if burstSends {
		return len(r.steps) - r.msgs + 1
	}
	return len(r.steps)
}

// TestWireCostEncrypted computes the rows of docs/BENCHMARKS.md, "Wire
// cost under encryption": our rounds under Noise against MQTT QoS 1 under
// TLS 1.3, each record's framing and tag counted. It holds the burst to
// under half of MQTT's per message, and a round without the receipt leg
// (what MQTT's round carries) to less than MQTT's.
func TestWireCostEncrypted(t *testing.T) {
	isolated, burst := ourIsolated(false), ourBurst(false)
	noReceipt := isolated
	noReceipt.name = "Switchboard, isolated, live, without the receipt leg"
	noReceipt.steps = noReceipt.steps[:4]
	mqtt := mqttRound(`MQTT 3.1.1 QoS 1, topic "u/7654321" (main)`, "u/7654321")
	mqttBurst := wireRound{name: `MQTT 3.1.1 QoS 1, burst of 10`, msgs: 10, bodies: 20}
	for range 10 {
		mqttBurst.steps = append(mqttBurst.steps, mqtt.steps...)
	}
	mqttReceipt := mqttWithReceipt()
	row := func(r wireRound, recs, per int) (overhead int, perMsg float64) {
		overhead = r.overhead() + recs*per
		return overhead, float64(overhead) / float64(r.msgs)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| exchange | records | overhead with encryption | per msg |\n|---|---:|---:|---:|\n")
	ours := map[string]float64{}
	for _, c := range []struct {
		r     wireRound
		burst bool
		per   int
		tag   string
	}{
		{isolated, false, noiseRecord, "Noise"}, {noReceipt, false, noiseRecord, "Noise"}, {burst, true, noiseRecord, "Noise"},
		{mqtt, false, tlsRecord, "TLS 1.3"}, {mqttBurst, false, tlsRecord, "TLS 1.3"}, {mqttReceipt, false, tlsRecord, "TLS 1.3"},
	} {
		recs := records(c.r, c.burst)
		o, p := row(c.r, recs, c.per)
		ours[c.r.name] = p
		fmt.Fprintf(&table, "| %s, over %s | %d | %d | %.1f |\n", c.r.name, c.tag, recs, o, p)
	}
	t.Log(table.String())
	if ours[burst.name] >= ours[mqttBurst.name]/2 {
		t.Errorf("burst under Noise: %.1f bytes a message, want under half of MQTT over TLS's %.1f", ours[burst.name], ours[mqttBurst.name])
	}
	if ours[noReceipt.name] >= ours[mqtt.name] {
		t.Errorf("round without the receipt leg under Noise: %.1f, MQTT over TLS: %.1f", ours[noReceipt.name], ours[mqtt.name])
	}
	if ours[isolated.name] >= ours[mqttReceipt.name] {
		t.Errorf("round with its receipt under Noise: %.1f, MQTT with an app receipt over TLS: %.1f", ours[isolated.name], ours[mqttReceipt.name])
	}
}
