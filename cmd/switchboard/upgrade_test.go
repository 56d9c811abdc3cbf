package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifyMainPID: with NOTIFY_SOCKET set, as systemd sets it for a
// unit with NotifyAccess, the old process sends the service manager one
// datagram "MAINPID=<pid>\n" naming its successor, on a socket path or an
// abstract socket ("@name"); without it, it sends nothing and succeeds;
// with no manager listening, it says so.
func TestNotifyMainPID(t *testing.T) {
	for _, tc := range []struct {
		name     string
		listen   string // the manager's socket; "": none
		socket   string // NOTIFY_SOCKET
		wantSent bool
		wantErr  string
	}{
		{"path", filepath.Join(t.TempDir(), "notify"), "", true, ""},
		{"abstract", fmt.Sprintf("@switchboard-test-%d", time.Now().UnixNano()), "", true, ""},
		{"unset", "", "", false, ""},
		{"nobody listening", "", filepath.Join(t.TempDir(), "gone"), false, "notifying the service manager"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			socket := tc.socket
			var got chan string
			if tc.listen != "" {
				socket = tc.listen
				c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tc.listen, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				got = make(chan string, 1)
				go func() {
					buf := make([]byte, 256)
					n, _, err := c.ReadFromUnix(buf)
					if err == nil {
						got <- string(buf[:n])
					}
				}()
			}
			t.Setenv("NOTIFY_SOCKET", socket)
			err := notifyMainPID(4321)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("notifyMainPID with NOTIFY_SOCKET=%q: %v, want an error saying %q", socket, err, tc.wantErr)
			}
			if !tc.wantSent {
				return
			}
			select {
			case msg := <-got:
				if msg != "MAINPID=4321\n" {
					t.Errorf("the service manager got %q, want %q", msg, "MAINPID=4321\n")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the service manager got nothing")
			}
		})
	}
}
