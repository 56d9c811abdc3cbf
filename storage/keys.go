package storage

import (
	"encoding/binary"
	"errors"
)

// The Badger key space. Every number is big-endian and fixed-width, so keys
// sort in numeric order and a recipient's entries are contiguous.
//
//	'm' recipient(8) seq(8)            -> entry: kind(1) sender(8) msgid(8) time(8) value
//	'h' recipient(8)                   -> meta:  hw(8) floor(8) count(8) bytes(8)
//	'd' sender(8) msgid(8) recipient(8) -> dup:  seq(8) time(8)   (Badger TTL: window + 1h)
//	'g' group(8) 0x00                  -> group: owner(8) created(8) members(8)
//	'g' group(8) 0x01 member(8)        -> role(1)
//	'u' member(8) group(8)             -> role(1)   (reverse index for Groups)
//	'p' sender(8) acker(8) seq(8)      -> pending receipt: msgid(8) more(8) flags(1)
//	'e' actor(8) msgid(8)              -> pending group event (groupchange.go)
//	't'                                -> totals: count(8) bytes(8)
//	'q' sender(8)                      -> sender use: count(8) bytes(8)   (absent when zero; quota.go)
//	'z'                                -> scratch key housekeeping writes and drops to flush memtables
//	'v' id(8)                          -> move marker: state(1) offset(8) len(1) from (move.go; only while a move runs)
//
// Every key but 't', 'q', 'z' and 'v' belongs to one user or group id, which
// move.go's owner names: a new prefix must be given its owner there, or
// moves refuse to run (ErrUnknownKey).
// The meta key is written in the same transaction as every append, ack and
// expiry that changes it, so hw and floor never disagree with the entries on
// disk. Reads seek to 'm' recipient floor+1: the tombstones below the floor
// are never scanned.
const (
	prefixEntry      = 'm'
	prefixMeta       = 'h'
	prefixDedupe     = 'd'
	prefixGroup      = 'g'
	prefixByUser     = 'u'
	prefixPending    = 'p'
	prefixGroupEvent = 'e'
	prefixTotals     = 't'
	prefixQuota      = 'q'
	prefixScratch    = 'z'

	groupInfoTag   = 0x00
	groupMemberTag = 0x01

	entryKeyLen   = 17
	entryHeadLen  = 25
	metaKeyLen    = 9
	metaValLen    = 32
	dedupeKeyLen  = 25
	dedupeValLen  = 16
	groupInfoLen  = 24
	memberKeyLen  = 18
	byUserKeyLen  = 17
	totalsValLen  = 16
	pendingKeyLen = 25
	pendingValLen = 17
	groupPrefixSz = 9
)

var errCorrupt = errors.New("storage: corrupt record")

func entryKey(r, seq uint64) []byte { return putEntryKey(make([]byte, entryKeyLen), r, seq) }

// putEntryKey fills k (entryKeyLen bytes) and returns it; likewise the other
// put functions below, which let writes encode into a batch's slab.
func putEntryKey(k []byte, r, seq uint64) []byte {
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], r)
	binary.BigEndian.PutUint64(k[9:], seq)
	return k
}

func entryPrefix(r uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], r)
	return k
}

// putEntry writes the stored form of e, header then value, into v
// (entryHeadLen+len(e.Value) bytes).
func putEntry(v []byte, e *Entry) []byte {
	v[0] = byte(e.Kind)
	binary.BigEndian.PutUint64(v[1:], e.Sender)
	binary.BigEndian.PutUint64(v[9:], e.MsgID)
	binary.BigEndian.PutUint64(v[17:], uint64(e.Time))
	copy(v[entryHeadLen:], e.Value)
	return v
}

// decodeEntry fills e from key k and stored value v. e.Value aliases v.
func decodeEntry(k, v []byte, e *Entry) error {
	if len(k) != entryKeyLen || len(v) < entryHeadLen {
		return errCorrupt
	}
	e.Recipient = binary.BigEndian.Uint64(k[1:])
	e.Seq = binary.BigEndian.Uint64(k[9:])
	e.Kind = Kind(v[0])
	e.Sender = binary.BigEndian.Uint64(v[1:])
	e.MsgID = binary.BigEndian.Uint64(v[9:])
	e.Time = int64(binary.BigEndian.Uint64(v[17:]))
	e.Value = v[entryHeadLen:]
	return nil
}

func metaKey(r uint64) []byte { return putMetaKey(make([]byte, metaKeyLen), r) }

func putMetaKey(k []byte, r uint64) []byte {
	k[0] = prefixMeta
	binary.BigEndian.PutUint64(k[1:], r)
	return k
}

func putMeta(v []byte, m meta) []byte {
	binary.BigEndian.PutUint64(v[0:], m.hw)
	binary.BigEndian.PutUint64(v[8:], m.floor)
	binary.BigEndian.PutUint64(v[16:], uint64(m.count))
	binary.BigEndian.PutUint64(v[24:], uint64(m.bytes))
	return v
}

func decodeMeta(v []byte) (meta, error) {
	if len(v) != metaValLen {
		return meta{}, errCorrupt
	}
	return meta{
		hw:    binary.BigEndian.Uint64(v[0:]),
		floor: binary.BigEndian.Uint64(v[8:]),
		count: int64(binary.BigEndian.Uint64(v[16:])),
		bytes: int64(binary.BigEndian.Uint64(v[24:])),
	}, nil
}

func dedupeKey(sender, msgID, r uint64) []byte {
	return putDedupeKey(make([]byte, dedupeKeyLen), sender, msgID, r)
}

func putDedupeKey(k []byte, sender, msgID, r uint64) []byte {
	k[0] = prefixDedupe
	binary.BigEndian.PutUint64(k[1:], sender)
	binary.BigEndian.PutUint64(k[9:], msgID)
	binary.BigEndian.PutUint64(k[17:], r)
	return k
}

func putDup(v []byte, d Dup) []byte {
	binary.BigEndian.PutUint64(v[0:], d.Seq)
	binary.BigEndian.PutUint64(v[8:], uint64(d.Time))
	return v
}

func decodeDup(r uint64, v []byte) (Dup, error) {
	if len(v) != dedupeValLen {
		return Dup{}, errCorrupt
	}
	return Dup{Recipient: r, Seq: binary.BigEndian.Uint64(v), Time: int64(binary.BigEndian.Uint64(v[8:]))}, nil
}

func groupPrefix(g uint64) []byte {
	k := make([]byte, groupPrefixSz, memberKeyLen)
	k[0] = prefixGroup
	binary.BigEndian.PutUint64(k[1:], g)
	return k
}

func groupInfoKey(g uint64) []byte {
	return append(groupPrefix(g), groupInfoTag)
}

func memberPrefix(g uint64) []byte {
	return append(groupPrefix(g), groupMemberTag)
}

func memberKey(g, m uint64) []byte {
	return binary.BigEndian.AppendUint64(memberPrefix(g), m)
}

func byUserKey(m, g uint64) []byte {
	k := make([]byte, byUserKeyLen)
	k[0] = prefixByUser
	binary.BigEndian.PutUint64(k[1:], m)
	binary.BigEndian.PutUint64(k[9:], g)
	return k
}

func encodeGroup(gi groupInfo) []byte {
	v := make([]byte, groupInfoLen)
	binary.BigEndian.PutUint64(v[0:], gi.owner)
	binary.BigEndian.PutUint64(v[8:], uint64(gi.created))
	binary.BigEndian.PutUint64(v[16:], uint64(gi.members))
	return v
}

func decodeGroup(v []byte) (groupInfo, error) {
	if len(v) != groupInfoLen {
		return groupInfo{}, errCorrupt
	}
	return groupInfo{
		owner:   binary.BigEndian.Uint64(v[0:]),
		created: int64(binary.BigEndian.Uint64(v[8:])),
		members: int(binary.BigEndian.Uint64(v[16:])),
	}, nil
}

func encodeTotals(t totals) []byte {
	v := make([]byte, totalsValLen)
	binary.BigEndian.PutUint64(v[0:], uint64(t.count))
	binary.BigEndian.PutUint64(v[8:], uint64(t.bytes))
	return v
}

func decodeTotals(v []byte) (totals, error) {
	if len(v) != totalsValLen {
		return totals{}, errCorrupt
	}
	return totals{count: int64(binary.BigEndian.Uint64(v)), bytes: int64(binary.BigEndian.Uint64(v[8:]))}, nil
}

func putPendingKey(k []byte, sender uint64, key ReceiptKey) []byte {
	k[0] = prefixPending
	binary.BigEndian.PutUint64(k[1:], sender)
	binary.BigEndian.PutUint64(k[9:], key.Acker)
	binary.BigEndian.PutUint64(k[17:], key.Seq)
	return k
}

// The flags byte of a pending receipt. It was a bool (0, or 1 for group
// messages) before expired receipts; both values keep their meaning.
const (
	pendingGroup   = 1 << 0 // PendingReceipt.Group
	pendingExpired = 1 << 1 // PendingReceipt.Expired
	pendingFlags   = pendingGroup | pendingExpired
)

func putPending(v []byte, p *PendingReceipt) []byte {
	binary.BigEndian.PutUint64(v[0:], p.MsgID)
	binary.BigEndian.PutUint64(v[8:], p.More)
	v[16] = 0
	if p.Group {
		v[16] |= pendingGroup
	}
	if p.Expired {
		v[16] |= pendingExpired
	}
	return v
}

func decodePending(k, v []byte) (PendingReceipt, error) {
	if len(k) != pendingKeyLen || len(v) != pendingValLen || v[16]&^pendingFlags != 0 {
		return PendingReceipt{}, errCorrupt
	}
	return PendingReceipt{
		Sender: be64(k[1:]), Acker: be64(k[9:]), Seq: be64(k[17:]),
		MsgID: be64(v[0:]), More: be64(v[8:]),
		Group: v[16]&pendingGroup != 0, Expired: v[16]&pendingExpired != 0,
	}, nil
}

func quotaKey(sender uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixQuota
	binary.BigEndian.PutUint64(k[1:], sender)
	return k
}

// A sender use is stored as totals are: count(8) bytes(8).
func encodeUse(u senderUse) []byte { return encodeTotals(totals(u)) }

func decodeUse(v []byte) (senderUse, error) {
	t, err := decodeTotals(v)
	return senderUse(t), err
}
