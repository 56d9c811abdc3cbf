package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	tea "charm.land/bubbletea/v2"

	"switchboard/client"
)

// Options configures Open and Run.
type Options struct {
	// Addr is the server's address, host:port. Required.
	Addr string
	// User is the user to log in as. Required.
	User uint64
	// Token returns the login token of User. Required.
	Token func(ctx context.Context) ([]byte, error)
	// StateDir is the folder of the state files (user-<id>.json). "" means
	// DefaultStateDir.
	StateDir string
	// Session tunes the client session (backoff…); its NextMsgID and Ack
	// are overwritten with the saved state's.
	Session client.Config
	// Noise, when not nil, runs the connection over the Noise transport;
	// Token must then be bound to Noise.Static's public key.
	Noise *client.NoiseOptions
}

// DefaultStateDir is where the state files go by default: beside the
// server's data folder, not in it, as a phone's storage is not the
// server's.
const DefaultStateDir = "chat-state"

// maxBatch bounds the events handed to the model at once: each hand-over
// saves the state file once, so a backlog is saved in a few writes, not one
// per entry, while the ACK (half the window, 128 entries by default) is not
// held back long.
const maxBatch = 128

// Client is a chat: the model, its state, and the connection it drives.
type Client struct {
	Model *Model
	Conn  *client.Conn

	release func() // the state's lock
}

// Open loads the user's state and starts the connection with it: the
// resume point, the msg_id counter and the outbox, resent with flag B. The
// connection keeps trying while the server is down.
func Open(ctx context.Context, o Options) (*Client, error) {
	if o.Addr == "" || o.User == 0 || o.Token == nil {
		return nil, errors.New("chat: Options.Addr, User and Token are required")
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	store := NewStore(o.StateDir, o.User)
	release, err := store.Lock()
	if err != nil {
		return nil, err
	}
	st, err := store.Load(o.User)
	if err != nil {
		release()
		return nil, err
	}
	conn, err := client.Dial(ctx, o.Addr, connOptions(st, o))
	if err != nil {
		release()
		return nil, fmt.Errorf("chat: %w", err)
	}
	m := NewModel(Config{User: o.User, Store: store, State: st, Link: conn})
	return &Client{Model: m, Conn: conn, release: release}, nil
}

// connOptions returns the client options that resume from st.
func connOptions(st *State, o Options) client.Options {
	opts := client.Options{Token: o.Token, Session: o.Session, ManualAck: true, KeepTrying: true, Noise: o.Noise}
	opts.Session.NextMsgID = st.NextMsgID
	opts.Session.Ack = st.Resume
	for _, p := range st.Outbox {
		opts.Outbox = append(opts.Outbox, p.outgoing())
	}
	return opts
}

// Pump hands the connection's events and status changes to send (a
// tea.Program's Send) until ctx is done or the connection ends. Events go
// in batches of at most maxBatch, in the order they came.
func (c *Client) Pump(ctx context.Context, send func(tea.Msg)) {
	go func() {
		send(StatusMsg(c.Conn.Status()))
		for {
			select {
			case <-c.Conn.Changed():
				send(StatusMsg(c.Conn.Status()))
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		ev, err := c.Conn.Recv(ctx)
		if err != nil {
			send(StatusMsg(c.Conn.Status()))
			return
		}
		batch := EventsMsg{ev}
		// What else has arrived joins the batch; a millisecond bounds the wait.
		bctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		for len(batch) < maxBatch {
			ev, err := c.Conn.Recv(bctx)
			if err != nil {
				break
			}
			batch = append(batch, ev)
		}
		cancel()
		send(batch)
	}
}

// Close ends the connection and releases the state's lock.
func (c *Client) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.release()
	}
	return err
}

// Run opens the chat and runs it on the terminal until the user quits.
func Run(ctx context.Context, o Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := Open(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	p := tea.NewProgram(c.Model, tea.WithContext(ctx))
	go c.Pump(ctx, p.Send)
	_, err = p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		err = nil
	}
	return err
}
