package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"switchboard/node"
	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/token"
)

// startNoiseServer starts a server offering Noise beside plain, with its
// token keys file and its Noise keys file in one folder, as a data folder
// holds them. tweaks change its configuration before it starts.
func startNoiseServer(t *testing.T, tweaks ...func(*node.Config)) testServer {
	t.Helper()
	dir := t.TempDir()
	nkeys, err := noise.LoadKeys(filepath.Join(dir, noise.KeysFileName), true)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := node.Default()
	cfg.Data, cfg.Memory, cfg.Metrics = "", true, ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Transport = node.TransportBoth
	cfg.Gateway.Addr = "127.0.0.1:0"
	cfg.Gateway.Keys = token.Keys{3: secret}
	cfg.Gateway.NoiseKeys = nkeys
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("3 "+hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testServer{addr: n.Addr().String(), keys: keys, srv: n.Gateway(), router: n.Router()}
}

// TestChatNoise: chat over Noise IK, the server's key read from the
// noise-keys file beside --keys, passes the checks (exactly once, in
// order, a receipt per copy), with one IK handshake per connection.
func TestChatNoise(t *testing.T) {
	srv := startNoiseServer(t)
	cfg := srv.config("chat")
	cfg.Noise = NoiseIK
	cfg.Pairs, cfg.Rate, cfg.Duration = 10, 400, time.Second
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 400)
	checkAllReceipted(t, res)
	if res.Transport != "noise ik" || res.Handshakes["IK"] != 20 || len(res.Handshakes) != 1 {
		t.Errorf("transport %q, handshakes %v; want noise ik, IK 20", res.Transport, res.Handshakes)
	}
	var sb strings.Builder
	PrintSummary(&sb, res)
	if !strings.Contains(sb.String(), "over noise ik (handshakes: IK 20)") {
		t.Errorf("the summary does not name the transport:\n%s", sb.String())
	}
}

// TestConnectNoise: connect over XX makes one XX handshake per connection;
// over IK with a key the server does not hold, every handshake falls back
// (XXfallback) and still logs in.
func TestConnectNoise(t *testing.T) {
	srv := startNoiseServer(t)
	for _, tc := range []struct {
		name, noise, key, want string
	}{
		{"XX", NoiseXX, "", "XX"},
		{"IK under a stale key", NoiseIK, strings.Repeat("ab", 32), "XXfallback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.config("connect")
			cfg.Noise, cfg.NoiseKey = tc.noise, tc.key
			cfg.Conns, cfg.ConnectRate, cfg.Hold, cfg.Burst = 40, 2000, 10*time.Millisecond, 1
			res := runOK(t, cfg)
			if res.Conns != 40 || res.Handshakes[tc.want] != 40 || len(res.Handshakes) != 1 {
				t.Errorf("conns %d, handshakes %v; want 40 %s", res.Conns, res.Handshakes, tc.want)
			}
			checkAllDelivered(t, res, 40)
		})
	}
}

// TestNoiseHandshakesRefusedBusy: a server that runs one handshake step at
// a time refuses the others of a burst with GOAWAY RETRY_LATER inside the
// handshake; the bench counts those closes, dials again after the delay,
// and every connection logs in. A handshake is refused only at its first
// message: one refused at the client's last would have finished on the
// client's side, counted twice once the client dials again.
func TestNoiseHandshakesRefusedBusy(t *testing.T) {
	srv := startNoiseServer(t, func(cfg *node.Config) {
		cfg.Gateway.MaxHandshakes, cfg.Gateway.HandshakeWorkers = 1, 1
	})
	cfg := srv.config("connect")
	cfg.Noise = NoiseXX
	cfg.Conns, cfg.ConnectRate, cfg.Hold, cfg.Burst = 40, 0, 10*time.Millisecond, 1
	cfg.Retries = 100
	res := runOK(t, cfg)
	if res.Conns != 40 || res.Handshakes["XX"] != 40 {
		t.Errorf("conns %d, handshakes %v; want 40 XX", res.Conns, res.Handshakes)
	}
	if res.Closes["RETRY_LATER"] == 0 {
		t.Errorf("closes %v: no handshake was refused RETRY_LATER by a server running one at a time", res.Closes)
	}
	checkAllDelivered(t, res, 40)
}

// TestNoiseAgainstPlainServer: --noise against a server without Noise
// ends the run at once with the reason, instead of retrying every login.
func TestNoiseAgainstPlainServer(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := node.Default()
	cfg.Data, cfg.Memory, cfg.Metrics = "", true, ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Transport = node.TransportPlain
	cfg.Gateway.Addr = "127.0.0.1:0"
	cfg.Gateway.Keys = token.Keys{3: secret}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("3 "+hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bc := Config{Scenario: "connect", Addr: n.Addr().String(), Keys: keys, Metrics: "-", Noise: NoiseXX, Conns: 4, Hold: time.Millisecond}
	_, err = Run(context.Background(), bc)
	if err == nil || !strings.Contains(err.Error(), "UNSUPPORTED_TRANSPORT") {
		t.Fatalf("--noise against a plain server: %v, want the run to end with UNSUPPORTED_TRANSPORT", err)
	}
}

// TestNoiseSealCoalesces: frames queued for one write go out in as few
// transport messages as fit, cut at frame boundaries, and open to the same
// frames.
func TestNoiseSealCoalesces(t *testing.T) {
	var frames []byte
	body := make([]byte, 20000)
	for i := range 7 { // 7 SENDs of 20,000 bytes: 140,000 bytes, three messages
		s := protocol.Send{MsgID: uint64(i + 1), To: 9, Body: body}
		frames = s.Append(frames)
	}
	send, recv := sessionPair(t)
	c := &conn{l: &loop{}, nz: &noiseState{sess: send}, fd: -1}
	out := c.seal(frames)
	var got []byte
	msgs := 0
	for len(out) > 0 {
		ct, n, err := noise.ReadTransport(out)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := recv.Open(ct)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(pt); {
			_, m, err := protocol.ReadFrame(pt[off:], protocol.MaxServerFrame)
			if err != nil {
				t.Fatalf("message %d at byte %d: %v: not whole frames", msgs, off, err)
			}
			off += m
		}
		got = append(got, pt...)
		out = out[n:]
		msgs++
	}
	if msgs != 3 || string(got) != string(frames) {
		t.Fatalf("%d messages carrying %d bytes; want 3 carrying the %d bytes queued", msgs, len(got), len(frames))
	}
}

// sessionPair returns the two ends of one transport session.
func sessionPair(t *testing.T) (a, b *noise.Session) {
	t.Helper()
	var k1, k2 [32]byte
	rand.Read(k1[:])
	rand.Read(k2[:])
	a, err := noise.Resume(noise.State{SendKey: k1, RecvKey: k2})
	if err != nil {
		t.Fatal(err)
	}
	b, err = noise.Resume(noise.State{SendKey: k2, RecvKey: k1})
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// TestNoiseKeys: --noise-key gives one key for every server or one per
// server in --addr's order; another count, a key that is not 32 bytes of
// hex, or no key and no noise-keys file beside the token keys is an error
// that says what to give.
func TestNoiseKeys(t *testing.T) {
	k1, k2 := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	ts := []target{{addr: "a:1", keys: "/nowhere/keys"}, {addr: "b:2", keys: "/nowhere/keys"}}
	tests := []struct {
		name, hex string
		ts        []target
		want      []string // each server's key, hex
		err       string
	}{
		{name: "one for all", hex: k1, ts: ts, want: []string{k1, k1}},
		{name: "one per server", hex: k1 + "," + k2, ts: ts, want: []string{k1, k2}},
		{name: "two for three servers", hex: k1 + "," + k2, ts: append(ts, target{addr: "c:3"}),
			err: "bench: --noise-key lists 2 keys for 3 servers: give one per server in --addr's order, or one for all"},
		{name: "a short key", hex: k1 + "," + k2[2:], ts: ts,
			err: `bench: --noise-key "` + k2[2:] + `": want 64 hex digits, a Curve25519 public key (switchboard noise-key prints it)`},
		{name: "no key and no file", ts: ts, err: "bench: --noise ik needs the server's Noise key: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := noiseKeys(tt.ts, tt.hex)
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var hexes []string
			for _, k := range got {
				hexes = append(hexes, hex.EncodeToString(k))
			}
			if !slices.Equal(hexes, tt.want) {
				t.Errorf("keys %q, want %q", hexes, tt.want)
			}
		})
	}
}
