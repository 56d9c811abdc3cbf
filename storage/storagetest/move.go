package storagetest

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// LeaveUnfinishedMove writes into the Badger store in dir the marker a
// storage.Move of id from the source named from leaves in its destination
// once the copy is whole and synced, as a crash after the source's
// deletion and before the marker's removal leaves it (storage/move.go:
// 'v' id(8) -> state(1) offset(8) len(1) from; state 2, copied whole, with
// the seqs kept). storage's TestLeaveUnfinishedMove checks that Holdings
// reads it back so.
func LeaveUnfinishedMove(t testing.TB, dir string, id uint64, from string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	k := binary.BigEndian.AppendUint64([]byte{'v'}, id)
	v := binary.BigEndian.AppendUint64([]byte{2}, 0)
	v = append(append(v, byte(len(from))), from...)
	err = db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) })
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}
