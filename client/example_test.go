package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"switchboard/client"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/token"
)

// server is a whole Switchboard in the test's process, on 127.0.0.1:0,
// with its mailboxes in a temporary folder.
type server struct {
	addr   string
	secret []byte
	stop   func()
}

func startServer() (*server, error) {
	dir, err := os.MkdirTemp("", "switchboard-client-example")
	if err != nil {
		return nil, err
	}
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i)
	}
	cfg := node.Default()
	cfg.Data = dir
	cfg.Metrics = ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Gateway.Addr = "127.0.0.1:0"
	cfg.Gateway.Loops = 1
	cfg.Gateway.Keys = token.Keys{1: secret}
	n, err := node.Start(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &server{addr: n.Addr().String(), secret: secret, stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Stop(ctx)
		os.RemoveAll(dir)
	}}, nil
}

// tokenFor returns a Token function for user: in an application, it asks
// the operator's backend.
func (s *server) tokenFor(user uint64) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		return token.Mint(s.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
	}
}

// Alice sends Bob a message; Bob receives it, and Alice learns it was
// accepted and then delivered. What each persists to resume later is the
// next msg_id, the resume point and the outbox.
func Example() {
	srv, err := startServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const alice, bob = 8765432, 7654321
	a, err := client.Dial(ctx, srv.addr, client.Options{Token: srv.tokenFor(alice)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	b, err := client.Dial(ctx, srv.addr, client.Options{Token: srv.tokenFor(bob)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	if _, err := a.Send(bob, false, []byte("hello, bob")); err != nil {
		fmt.Println(err)
		return
	}
	ev, err := b.Recv(ctx) // received: acknowledged within AckDelay
	if err != nil {
		fmt.Println(err)
		return
	}
	d := ev.(*protocol.Deliver)
	fmt.Printf("bob got msg %d from %d: %s\n", d.MsgID, d.From, d.Body)
	for {
		ev, err := a.Recv(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			fmt.Printf("alice's msg %d accepted\n", ev.MsgID)
		case *protocol.Receipt:
			fmt.Printf("alice's msg %d delivered\n", ev.MsgID)
			fmt.Printf("alice persists next msg id %d, resume point %d, %d unconfirmed\n", a.NextMsgID(), a.Resume(), a.Pending())
			fmt.Printf("bob persists resume point %d\n", b.Resume())
			return
		}
	}
	// Output:
	// bob got msg 1 from 8765432: hello, bob
	// alice's msg 1 accepted
	// alice's msg 1 delivered
	// alice persists next msg id 2, resume point 1, 0 unconfirmed
	// bob persists resume point 1
}
