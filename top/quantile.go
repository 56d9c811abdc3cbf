package top

import (
	"math"
)

var inf = math.Inf(1)

// bucket is one cumulative histogram bucket: Count observations were at
// most Le.
type bucket struct {
	Le    float64
	Count float64
}

// quantile returns the q-quantile (0 < q < 1) of cumulative buckets sorted
// by Le and ending with +Inf, as Prometheus' histogram_quantile does: the
// bucket holding the rank q×total, interpolated linearly within it (from 0
// for the first bucket). A rank in the +Inf bucket gives the highest finite
// bound. It returns NaN when there are no observations.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return math.NaN()
	}
	total := bs[len(bs)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range bs {
		if b.Count >= rank {
			if math.IsInf(b.Le, 1) {
				if i == 0 {
					return math.NaN()
				}
				return bs[i-1].Le
			}
			if b.Count == below {
				return b.Le
			}
			return lower + (b.Le-lower)*(rank-below)/(b.Count-below)
		}
		lower, below = b.Le, b.Count
	}
	return bs[len(bs)-2].Le
}

// addBuckets adds b to a bucket by bucket; a nil a takes b. Histograms of
// different bounds cannot be added: the result is nil.
func addBuckets(a, b []bucket) []bucket {
	if a == nil {
		return append([]bucket(nil), b...)
	}
	if len(a) != len(b) {
		return nil
	}
	out := make([]bucket, len(a))
	for i := range a {
		if a[i].Le != b[i].Le {
			return nil
		}
		out[i] = bucket{Le: a[i].Le, Count: a[i].Count + b[i].Count}
	}
	return out
}

// subBuckets returns cur − prev bucket by bucket: the observations made
// between two scrapes. A counter that went down (the server restarted)
// gives cur itself; different bounds give nil.
func subBuckets(cur, prev []bucket) []bucket {
	if prev == nil || len(prev) != len(cur) {
		return cur
	}
	out := make([]bucket, len(cur))
	for i := range cur {
		if cur[i].Le != prev[i].Le {
			return nil
		}
		if cur[len(cur)-1].Count < prev[len(prev)-1].Count {
			return cur // reset
		}
		out[i] = bucket{Le: cur[i].Le, Count: cur[i].Count - prev[i].Count}
	}
	return out
}
