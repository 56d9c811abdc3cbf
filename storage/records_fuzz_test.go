package storage

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// FuzzDecodeRecords: the decoders of what the store reads back from disk
// (entries, metas, dedupe records, groups, totals, pending receipts, quota
// use, group events, move markers) refuse any bytes they cannot read with
// an error, never a panic; and a meta, dedupe record, group, totals,
// pending receipt or move marker they do read encodes back to bytes that
// decode the same.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(metaKey(7), putMeta(make([]byte, metaValLen), meta{hw: 9, floor: 2, count: 7, bytes: 700}))
	f.Add(dedupeKey(1, 2, 3), putDup(make([]byte, dedupeValLen), Dup{Recipient: 3, Seq: 4, Time: 5}))
	f.Add(groupInfoKey(9), encodeGroup(groupInfo{}))
	f.Add([]byte{prefixTotals}, encodeTotals(totals{count: 3, bytes: 300}))
	f.Add(byUserKey(1, 2)[:12], []byte{1})
	f.Add(markerKey(6), markerValue(moveCopied, 40, "node-a"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		var e Entry
		_ = decodeEntry(k, v, &e)
		if m, err := decodeMeta(v); err == nil {
			if again, err := decodeMeta(putMeta(make([]byte, metaValLen), m)); err != nil || again != m {
				t.Errorf("meta %+v re-encoded decodes to %+v, %v", m, again, err)
			}
		}
		if d, err := decodeDup(3, v); err == nil {
			if again, err := decodeDup(3, putDup(make([]byte, dedupeValLen), d)); err != nil || again != d {
				t.Errorf("dedupe record %+v re-encoded decodes to %+v, %v", d, again, err)
			}
		}
		if g, err := decodeGroup(v); err == nil {
			if again, err := decodeGroup(encodeGroup(g)); err != nil || again != g {
				t.Errorf("group %+v re-encoded decodes to %+v, %v", g, again, err)
			}
		}
		if tot, err := decodeTotals(v); err == nil {
			if again, err := decodeTotals(encodeTotals(tot)); err != nil || again != tot {
				t.Errorf("totals %+v re-encoded decodes to %+v, %v", tot, again, err)
			}
		}
		if p, err := decodePending(k, v); err == nil {
			k2 := putPendingKey(make([]byte, pendingKeyLen), p.Sender, p.Key())
			v2 := putPending(make([]byte, pendingValLen), &p)
			if again, err := decodePending(k2, v2); err != nil || again != p {
				t.Errorf("pending receipt %+v re-encoded decodes to %+v, %v", p, again, err)
			}
		}
		if u, err := parseMarker(k, v); err == nil {
			state := byte(moveCopying)
			if u.Copied {
				state = moveCopied
			}
			if again, err := parseMarker(markerKey(u.ID), markerValue(state, u.offset, u.From)); err != nil || again != u {
				t.Errorf("move marker %+v re-encoded decodes to %+v, %v", u, again, err)
			}
		}
		_, _ = decodeUse(v)
		_, _ = decodeGroupEvent(k, v)
	})
}

// TestGroupsOfSkipsCorruptKeys: a membership-by-user key of the wrong
// length (a corrupt or foreign key under the member's prefix) is skipped
// when the member's groups are listed; it panicked reading past its end.
func TestGroupsOfSkipsCorruptKeys(t *testing.T) {
	s, err := openBadger(smallConfig(t.TempDir(), -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	db := s.be.(*badgerBackend).db
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(byUserKey(5, 7), []byte{byte(RoleMember)}); err != nil {
			return err
		}
		return txn.Set(byUserKey(5, 9)[:12], []byte{byte(RoleMember)}) // cut short
	})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := s.Groups(5)
	if err != nil || len(gs) != 1 || gs[0] != 7 {
		t.Fatalf("groups of 5: %v, %v; want [7]", gs, err)
	}
}

// TestMembersSkipsCorruptKeys: a member key of the wrong length, or with a
// value that is not one role byte, is skipped when a group's members are
// listed, and every member after it is still listed.
func TestMembersSkipsCorruptKeys(t *testing.T) {
	s, err := openBadger(smallConfig(t.TempDir(), -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const g = 7
	if _, _, err := s.ChangeGroup(GroupChange{Group: g, Actor: 5, MsgID: 1, Op: GroupCreate, Members: []uint64{6}}); err != nil {
		t.Fatal(err)
	}
	db := s.be.(*badgerBackend).db
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(memberKey(g, 1)[:12], []byte{byte(RoleMember)}); err != nil { // cut short
			return err
		}
		return txn.Set(memberKey(g, 2), []byte{byte(RoleMember), 0}) // a value too long
	})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Members(g)
	want := []Member{{ID: 5, Role: RoleOwner}, {ID: 6, Role: RoleMember}}
	if err != nil || !slices.Equal(ms, want) {
		t.Fatalf("members of %d: %v, %v; want %v", g, ms, err, want)
	}
}

// FuzzReadSegment: whatever a segment file of the in-flight log holds
// after a crash (a torn write, zeros, an earlier life's records, garbage),
// replay reads it without a panic, ends within the file, and returns every
// record written whole before the damage: here one record, then the
// fuzzer's bytes.
func FuzzReadSegment(f *testing.F) {
	f.Add([]byte("payload"), []byte{})
	f.Add([]byte("p"), []byte{0, 0, 0, 9, 1, 2, 3, 4, 5})
	f.Add([]byte{}, bytes.Repeat([]byte{0xff}, 20))
	f.Add([]byte("x"), endMark(3))
	f.Fuzz(func(t *testing.T, first, tail []byte) {
		const seg = 3
		data := []byte(tierMagic)
		data = binary.BigEndian.AppendUint32(data, uint32(len(first)))
		data = binary.BigEndian.AppendUint32(data, recordSum(seg, first))
		data = append(data, first...)
		whole := len(data)
		data = append(data, tail...)
		path := filepath.Join(t.TempDir(), "segment")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		_, end, err := readSegment(path, seg, func(p []byte) error { got = append(got, bytes.Clone(p)); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if end > len(data) {
			t.Fatalf("valid records end at %d, past the file's %d bytes", end, len(data))
		}
		// (An empty record reads as the end mark, so only a non-empty one
		// must come back.)
		if len(first) > 0 && (len(got) == 0 || !bytes.Equal(got[0], first) || end < whole) {
			t.Fatalf("the record written whole was not replayed: got %d records, end %d of %d", len(got), end, whole)
		}
	})
}
