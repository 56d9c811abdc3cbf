//go:build soak

package main

import (
	"testing"
	"time"
)

// The figures below are one run of
//
//	go test -tags soak -race -count=1 -run TestSoakReceipts ./cmd/switchboard/
//
// on the 2-core development machine (135 s in all).

// TestSoakReceiptsKill9AfterAck is TestReceiptsKill9AfterAck with 40 server
// lives of six pairs: 240 kills after an ACK, 120 of them at leads that
// learn where the receipts are pending. Run with `make soak`. Measured: 20 s;
// 145 kills before the ACK committed, 76 with its receipts pending, 19
// after they were stored; 48,000 receipts, none missing.
func TestSoakReceiptsKill9AfterAck(t *testing.T) {
	runAckKill(t, 40, 6, 200, true)
}

// TestSoakReceiptsGracefulStop is TestReceiptsGracefulStop with ten stops,
// each after 5 s of traffic from 50 pairs. Measured: 88 s; 110 to 317
// receipts pending at each stop, 232,927 receipts, none missing.
func TestSoakReceiptsGracefulStop(t *testing.T) {
	runStopUnderLoad(t, 10, 50, 5*time.Second)
}

// TestSoakReceiptsKill9DuringRecovery is TestReceiptsKill9DuringRecovery
// with a backlog of 40,000 pending receipts (ten shard queues' worth, so
// the rescan runs for seconds) and each of its three kills done four times.
// Measured: 23 s; the twelve kills left 40,768 pending down to 746, and
// all 40,768 receipts arrived after the last restart.
func TestSoakReceiptsKill9DuringRecovery(t *testing.T) {
	runRecoveryKill(t, 40_000, 4)
}
