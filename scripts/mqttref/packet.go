package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MQTT 3.1.1 control packets, as far as a QoS 1 publisher and subscriber
// need them (OASIS MQTT 3.1.1, section 2 and 3). Every packet is a fixed
// header, one byte of type and flags, then the remaining length as a
// base-128 varint of 1 to 4 bytes, then that many bytes:
//
//	CONNECT    0x10 len  00 04 'M' 'Q' 'T' 'T'  04 (level)  02 (clean session)  keepalive(2)  client id(2+n)
//	CONNACK    0x20 02   flags(1) return code(1)
//	SUBSCRIBE  0x82 len  packet id(2)  topic filter(2+n)  requested QoS(1)
//	SUBACK     0x90 03   packet id(2)  granted QoS(1)
//	PUBLISH    0x32 len  topic(2+n)  packet id(2)  payload  (QoS 1; 0x3a with DUP)
//	PUBACK     0x40 02   packet id(2)
const (
	typeConnect   = 1
	typeConnack   = 2
	typePublish   = 3
	typePuback    = 4
	typeSubscribe = 8
	typeSuback    = 9

	// maxRemaining is the most a packet of this tool carries: a PUBLISH
	// with a short topic and the largest --size. A broker sending more is
	// refused before anything is buffered.
	maxRemaining = 1 << 16
)

var (
	errTooLarge  = errors.New("mqttref: packet larger than this tool reads")
	errMalformed = errors.New("mqttref: malformed packet")
)

// packet is one control packet read: its fixed header's first byte and its
// remaining bytes, valid until the next read.
type packet struct {
	header byte
	body   []byte
}

func (p packet) kind() byte { return p.header >> 4 }

// appendHeader appends a fixed header of first byte h for a remaining
// length n.
func appendHeader(dst []byte, h byte, n int) []byte {
	dst = append(dst, h)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			dst = append(dst, b|0x80)
			continue
		}
		return append(dst, b)
	}
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// appendConnect appends a CONNECT with a clean session.
func appendConnect(dst []byte, clientID string, keepalive uint16) []byte {
	dst = appendHeader(dst, typeConnect<<4, 10+2+len(clientID))
	dst = appendString(dst, "MQTT")
	dst = append(dst, 4, 0x02)
	dst = binary.BigEndian.AppendUint16(dst, keepalive)
	return appendString(dst, clientID)
}

// appendSubscribe appends a SUBSCRIBE to one topic filter at QoS 1.
func appendSubscribe(dst []byte, id uint16, topic string) []byte {
	dst = appendHeader(dst, typeSubscribe<<4|0x02, 2+2+len(topic)+1)
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = appendString(dst, topic)
	return append(dst, 1)
}

// appendPublish appends a QoS 1 PUBLISH.
func appendPublish(dst []byte, id uint16, topic string, payload []byte) []byte {
	dst = appendHeader(dst, typePublish<<4|0x02, 2+len(topic)+2+len(payload))
	dst = appendString(dst, topic)
	dst = binary.BigEndian.AppendUint16(dst, id)
	return append(dst, payload...)
}

// appendPuback appends a PUBACK.
func appendPuback(dst []byte, id uint16) []byte {
	return binary.BigEndian.AppendUint16(append(dst, typePuback<<4, 2), id)
}

// readPacket reads one packet into buf (grown as needed) and returns it.
func readPacket(r *bufio.Reader, buf []byte) (packet, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return packet{}, buf, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return packet{}, buf, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; i == 3 {
			return packet{}, buf, fmt.Errorf("%w: remaining length over 4 bytes", errMalformed)
		}
	}
	if n > maxRemaining {
		return packet{}, buf, fmt.Errorf("%w: %d bytes", errTooLarge, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return packet{}, buf, err
	}
	return packet{header: h, body: buf}, buf, nil
}

// packetID returns a PUBACK's or SUBACK's packet id.
func (p packet) packetID() (uint16, error) {
	if len(p.body) < 2 {
		return 0, fmt.Errorf("%w: type %d with %d bytes", errMalformed, p.kind(), len(p.body))
	}
	return binary.BigEndian.Uint16(p.body), nil
}

// publish returns a PUBLISH's packet id (0 at QoS 0) and payload.
func (p packet) publish() (id uint16, payload []byte, err error) {
	if len(p.body) < 2 {
		return 0, nil, fmt.Errorf("%w: PUBLISH of %d bytes", errMalformed, len(p.body))
	}
	rest := p.body[2:]
	n := int(binary.BigEndian.Uint16(p.body))
	if n > len(rest) {
		return 0, nil, fmt.Errorf("%w: topic of %d bytes in %d", errMalformed, n, len(rest))
	}
	rest = rest[n:]
	if p.header>>1&3 == 0 {
		return 0, rest, nil
	}
	if len(rest) < 2 {
		return 0, nil, fmt.Errorf("%w: PUBLISH without its packet id", errMalformed)
	}
	return binary.BigEndian.Uint16(rest), rest[2:], nil
}
