package storage

import (
	"math/rand/v2"
	"testing"
)

// tierKeys returns the keys an in-flight tier holds under load: for each of
// users recipients a meta key and perUser entries, and as many pending
// receipts and dedupe records, in random order.
func tierKeys(users, perUser int) [][]byte {
	var ks [][]byte
	for u := range uint64(users) {
		ks = append(ks, metaKey(1000+u))
		for s := range uint64(perUser) {
			ks = append(ks, entryKey(1000+u, 5000+s))
			ks = append(ks, putPendingKey(make([]byte, pendingKeyLen), 1000+u, ReceiptKey{Acker: 3000 + u, Seq: 7000 + s}))
			ks = append(ks, dedupeKey(1000+u, 9000+s, 3000+u))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	return ks
}

// BenchmarkTierTree: a lookup and an insert in the tier's B-tree holding
// what 2,000 users with 20 messages in flight each leave there (about
// 122,000 items), the comparisons its operations make being most of a
// batch's time in the closed loop.
//
//	go test -run '^$' -bench TierTree -benchtime 2000000x ./storage/
func BenchmarkTierTree(b *testing.B) {
	ks := tierKeys(2000, 20)
	tr := newTTree()
	items := make([]*titem, len(ks))
	for i, k := range ks {
		items[i] = newTitem(k)
		tr.Set(items[i])
	}
	b.Run("get", func(b *testing.B) {
		var probe titem
		for i := range b.N {
			probe.setKey(ks[i%len(ks)])
			if _, ok := tr.Get(&probe); !ok {
				b.Fatal("missing")
			}
		}
	})
	b.Run("set", func(b *testing.B) {
		for i := range b.N {
			tr.Set(items[i%len(items)])
		}
	})
}
