package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// newResult returns a Result with empty histograms.
func newResult() *Result {
	return &Result{
		SendToAck:     NewHistogram(),
		SendToDeliver: NewHistogram(),
		LoginLatency:  NewHistogram(),
		RetryAfter:    NewHistogram(),
		GeneratorLag:  NewHistogram(),
	}
}

// Merge adds o, measured by another process (or loop) over the same phase,
// to r: counts and histograms add up, connections add up, the duration is
// the longest, failures and notes are concatenated. Timeline and Memory
// are the coordinator's and are taken from o only if r has none.
func (r *Result) Merge(o *Result) {
	if o == nil {
		return
	}
	if r.Scenario == "" {
		r.Scenario = o.Scenario
	}
	if r.Params == nil && o.Params != nil {
		r.Params = maps.Clone(o.Params)
	}
	if r.Started.IsZero() || (!o.Started.IsZero() && o.Started.Before(r.Started)) {
		r.Started = o.Started
	}
	r.Duration = max(r.Duration, o.Duration)
	r.CostWindow = max(r.CostWindow, o.CostWindow)
	r.Warmup = max(r.Warmup, o.Warmup)
	r.WarmupSent += o.WarmupSent
	r.WarmupAccepted += o.WarmupAccepted
	r.WarmupDelivered += o.WarmupDelivered
	r.Processes += o.Processes
	r.Conns += o.Conns
	r.Sent += o.Sent
	r.Accepted += o.Accepted
	r.Refused += o.Refused
	r.RetryLater += o.RetryLater
	r.Resent += o.Resent
	r.Delivered += o.Delivered
	r.Duplicates += o.Duplicates
	r.Reordered += o.Reordered
	r.Lost += o.Lost
	r.Unchecked += o.Unchecked
	r.Redelivered += o.Redelivered
	r.Unsent += o.Unsent
	r.Receipts += o.Receipts
	r.ReceiptsRedelivered += o.ReceiptsRedelivered
	r.ReceiptsMissing += o.ReceiptsMissing
	if r.Transport == "" {
		r.Transport = o.Transport
	}
	for k, v := range o.Handshakes {
		if r.Handshakes == nil {
			r.Handshakes = map[string]uint64{}
		}
		r.Handshakes[k] += v
	}
	for k, v := range o.Closes {
		if r.Closes == nil {
			r.Closes = map[string]uint64{}
		}
		r.Closes[k] += v
	}
	mergeHist(&r.SendToAck, o.SendToAck)
	mergeHist(&r.SendToDeliver, o.SendToDeliver)
	mergeHist(&r.LoginLatency, o.LoginLatency)
	mergeHist(&r.RetryAfter, o.RetryAfter)
	mergeHist(&r.GeneratorLag, o.GeneratorLag)
	r.BytesOut += o.BytesOut
	r.BytesIn += o.BytesIn
	if len(r.Timeline) == 0 {
		r.Timeline = append(r.Timeline, o.Timeline...)
	}
	if len(r.Memory) == 0 {
		r.Memory = append(r.Memory, o.Memory...)
	}
	r.GeneratorCPU += o.GeneratorCPU
	r.ServerCPU = max(r.ServerCPU, o.ServerCPU)
	if r.ServerSyncs == nil && o.ServerSyncs != nil {
		n := *o.ServerSyncs
		r.ServerSyncs = &n
	}
	for k, v := range o.Figures {
		if r.Figures == nil {
			r.Figures = map[string]float64{}
		}
		if _, ok := r.Figures[k]; !ok {
			r.Figures[k] = v
		}
	}
	if r.Baseline == nil && o.Baseline != nil {
		r.Baseline = o.Baseline
	} else if o.Baseline != nil {
		r.Baseline.Merge(o.Baseline)
	}
	r.Failures = append(r.Failures, o.Failures...)
	r.FailuresNotListed += o.FailuresNotListed
	r.Notes = appendNew(r.Notes, o.Notes...)
}

// appendNew appends the notes dst does not hold yet: workers say the same
// things.
func appendNew(dst []string, notes ...string) []string {
	for _, n := range notes {
		seen := false
		for _, d := range dst {
			seen = seen || d == n
		}
		if !seen {
			dst = append(dst, n)
		}
	}
	return dst
}

func mergeHist(dst **hdrhistogram.Histogram, src *hdrhistogram.Histogram) {
	if src == nil {
		return
	}
	if *dst == nil {
		*dst = NewHistogram()
	}
	(*dst).Merge(src)
}

// wireResult is a Result as a worker sends it: the histograms, which Result
// leaves out of its JSON, travel as HdrHistogram's compressed encoding.
type wireResult struct {
	*Result
	SendToAck     string `json:"send_to_ack_hist,omitempty"`
	SendToDeliver string `json:"send_to_deliver_hist,omitempty"`
	LoginLatency  string `json:"login_hist,omitempty"`
	RetryAfter    string `json:"retry_after_hist,omitempty"`
	GeneratorLag  string `json:"generator_lag_hist,omitempty"`
}

func encodeHist(h *hdrhistogram.Histogram) (string, error) {
	if h == nil {
		return "", nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	h, err := hdrhistogram.Decode(b)
	if err != nil {
		return nil, err
	}
	// Decode gives the sender's geometry, which is NewHistogram's; merge
	// into a fresh one to be sure.
	out := NewHistogram()
	out.Merge(h)
	return out, nil
}

// marshalResult encodes r with its histograms.
func marshalResult(r *Result) ([]byte, error) {
	w := wireResult{Result: r}
	var err error
	for _, x := range []struct {
		dst *string
		h   *hdrhistogram.Histogram
	}{{&w.SendToAck, r.SendToAck}, {&w.SendToDeliver, r.SendToDeliver}, {&w.LoginLatency, r.LoginLatency}, {&w.RetryAfter, r.RetryAfter}, {&w.GeneratorLag, r.GeneratorLag}} {
		if *x.dst, err = encodeHist(x.h); err != nil {
			return nil, fmt.Errorf("bench: encoding a histogram: %w", err)
		}
	}
	return json.Marshal(w)
}

// unmarshalResult decodes what marshalResult encoded.
func unmarshalResult(b []byte) (*Result, error) {
	w := wireResult{Result: &Result{}}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("bench: decoding a worker's result: %w", err)
	}
	r := w.Result
	var err error
	for _, x := range []struct {
		dst **hdrhistogram.Histogram
		s   string
	}{{&r.SendToAck, w.SendToAck}, {&r.SendToDeliver, w.SendToDeliver}, {&r.LoginLatency, w.LoginLatency}, {&r.RetryAfter, w.RetryAfter}, {&r.GeneratorLag, w.GeneratorLag}} {
		if *x.dst, err = decodeHist(x.s); err != nil {
			return nil, fmt.Errorf("bench: decoding a histogram: %w", err)
		}
	}
	return r, nil
}
