package dictgen

import (
	"encoding/binary"
	"sort"

	"github.com/klauspost/compress/zstd"
)

// dmer is the length of the substrings whose frequency the trainer counts.
// Eight bytes: shorter ones are too common in random ciphertext to mean
// anything, longer ones miss the short repeated structure of frames.
const dmer = 8

// TrainContent returns size bytes of dictionary content selected from the
// samples with the COVER method of zstd's trainer (Liao, Petri, Moffat,
// Wirth, "Effective construction of relative Lempel-Ziv dictionaries",
// 2016): split the concatenated samples into one epoch per segment, pick in
// each the segment of seg bytes whose not-yet-covered 8-byte substrings occur
// in the most samples, and lay the segments out with the best at the end,
// nearest the data, where offsets are shortest.
//
// Unlike github.com/klauspost/compress/dict, it iterates over no map, so the
// same samples always give the same bytes.
func TrainContent(samples [][]byte, size, seg int) []byte {
	// freq counts, for each 8-byte substring, the samples holding it.
	freq := make(map[uint64]uint32)
	seen := make(map[uint64]struct{})
	var all []byte
	var keys []uint64 // the dmer starting at each position of all; 0 where none
	var valid []bool
	for _, s := range samples {
		clear(seen)
		for i := 0; i+dmer <= len(s); i++ {
			k := binary.LittleEndian.Uint64(s[i:])
			if _, ok := seen[k]; !ok {
				seen[k] = struct{}{}
				freq[k]++
			}
		}
		for i := range s {
			ok := i+dmer <= len(s)
			var k uint64
			if ok {
				k = binary.LittleEndian.Uint64(s[i:])
			}
			keys = append(keys, k)
			valid = append(valid, ok)
		}
		all = append(all, s...)
	}

	type segment struct {
		start, score int
		epoch        int
	}
	epochs := max(size/seg, 1)
	epochLen := len(all) / epochs
	var picked []segment
	active := make(map[uint64]int)
	for e := range epochs {
		begin, end := e*epochLen, min((e+1)*epochLen, len(all))
		if end-begin < seg {
			continue
		}
		// Slide a window of seg bytes; score counts each distinct dmer once.
		clear(active)
		best, score := segment{start: begin, epoch: e}, 0
		add := func(i int) {
			if !valid[i] {
				return
			}
			if active[keys[i]]++; active[keys[i]] == 1 {
				score += int(freq[keys[i]])
			}
		}
		remove := func(i int) {
			if !valid[i] {
				return
			}
			if active[keys[i]]--; active[keys[i]] == 0 {
				score -= int(freq[keys[i]])
				delete(active, keys[i])
			}
		}
		last := seg - dmer + 1 // dmers starting in the window
		for i := begin; i < begin+last; i++ {
			add(i)
		}
		best.score = score
		for s := begin + 1; s+seg <= end; s++ {
			remove(s - 1)
			add(s + last - 1)
			if score > best.score {
				best.start, best.score = s, score
			}
		}
		if best.score == 0 {
			continue
		}
		// What the segment covers no longer scores for later epochs.
		for i := best.start; i < best.start+last; i++ {
			if valid[i] {
				freq[keys[i]] = 0
			}
		}
		picked = append(picked, best)
	}
	// Worst first, best last; ties in epoch order.
	sort.SliceStable(picked, func(i, j int) bool { return picked[i].score < picked[j].score })
	out := make([]byte, 0, len(picked)*seg)
	for _, s := range picked {
		out = append(out, all[s.start:s.start+seg]...)
	}
	if len(out) > size {
		out = out[len(out)-size:]
	}
	return out
}

// ZstdDictID is the Dictionary_ID written in the zstd dictionary's header.
// It never travels on the wire (frames omit it), so it only has to be
// stable.
const ZstdDictID = 1

// BuildZstd returns a zstd dictionary (magic, id, entropy tables fitted to
// the samples, then content) made of content.
func BuildZstd(content []byte, samples [][]byte) ([]byte, error) {
	return zstd.BuildDict(zstd.BuildDictOptions{
		ID:       ZstdDictID,
		Contents: samples,
		History:  content,
		Offsets:  [3]int{1, 4, 8},
		// Compatible with libzstd 1.5.5 and older, as shipped by some phones.
		CompatV155: true,
		Level:      zstd.SpeedDefault,
	})
}
