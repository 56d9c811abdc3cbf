package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"switchboard/noise"
	"switchboard/protocol"
)

// Every ERROR the server sends carries a reason naming the check that
// failed ("ACK 17 beyond last delivered 12"), and every close is logged at
// debug level with its user, code and reason. A check that fails returns
// its code through reject, which leaves the reason in loop.reason; fail
// writes it into the ERROR and hands it to OnClose for the log line.
// Reasons are built only when a connection fails, never on the hot path.

// appendError appends e as a frame that a client which asked for Noise
// cannot take for a handshake message: where the frame's first byte, its
// length, would be a kind a server sends (noise.ServerKind), the reason
// ends in a space, one byte longer. Only frames of up to 127 bytes have a
// one-byte length, so one byte more always clears it. Every ERROR the
// server sends goes through it; plain ones before the transport is known
// (a refusal at connect, or of the preface) need it (PROTOCOL.md 3.1).
func appendError(dst []byte, e protocol.Error) []byte {
	n := len(dst)
	dst = e.Append(dst)
	if !noise.ServerKind(dst[n]) {
		return dst
	}
	e.Reason += " "
	return e.Append(dst[:n])
}

// reject records reason as why the connection in hand is closed with code,
// and returns code. Loop-only.
func (l *loop) reject(code protocol.Code, reason string) protocol.Code {
	l.reason = reason
	return code
}

// rejectf is reject with a formatted reason.
func (l *loop) rejectf(code protocol.Code, format string, args ...any) protocol.Code {
	return l.reject(code, fmt.Sprintf(format, args...))
}

// rejectErr rejects a frame whose decoding failed with err: the code is
// the error's, and the reason names the frame and what was wrong with it.
func (l *loop) rejectErr(what string, err error) protocol.Code {
	return l.reject(protocol.CodeOf(err), what+": "+strings.TrimPrefix(err.Error(), "protocol: "))
}

// rejectFrame rejects the frame at the start of b, which protocol.ReadFrame
// refused with err under the limit max: the reason names its type or the
// length it declared.
func (l *loop) rejectFrame(b []byte, err error, max int) protocol.Code {
	length, n := binary.Uvarint(b)
	switch {
	case errors.Is(err, protocol.ErrUnknownType) && n > 0 && n < len(b):
		return l.rejectf(protocol.CodeUnknownType, "frame type 0x%02x unknown", b[n]&0x1f)
	case errors.Is(err, protocol.ErrFrameTooLarge) && n > 0:
		return l.rejectf(protocol.CodeFrameTooLarge, "frame of %d bytes over the limit of %d", length, max)
	case errors.Is(err, protocol.ErrFrameTooLarge):
		return l.rejectf(protocol.CodeFrameTooLarge, "frame length prefix over the limit of %d", max)
	}
	return l.rejectErr("frame", err)
}

// requested turns the close a worker asked for (conn.closing) into its
// code, and records its reason. Loop-only.
func (l *loop) requested(closing uint8) protocol.Code {
	switch closing {
	case 0:
		return 0
	case closeOverCap:
		l.srv.live.slowOverCap.Add(1)
		return l.rejectf(protocol.CodeSlowConsumer, "outbound_cap: queued bytes over the outbound cap of %d", l.srv.cfg.OutboundCap)
	}
	code := protocol.Code(closing)
	if reason, ok := routerCloses[code]; ok {
		return l.reject(code, reason)
	}
	return l.reject(code, "closed by the router: "+code.String())
}

// overWriteBuffer closes the connection in hand as a slow consumer whose
// written bytes the socket has not taken, unsent, passed the outbound cap:
// its client does not read. Loop-only.
func (l *loop) overWriteBuffer(unsent int) protocol.Code {
	l.srv.live.slowWriteBuffer.Add(1)
	return l.rejectf(protocol.CodeSlowConsumer, "write_buffer: unsent bytes %d over the outbound cap of %d", unsent, l.srv.cfg.OutboundCap)
}

// The three slow-consumer closes begin their reasons with their cause, as
// the metric switchboard_slow_consumers_total labels it: "window" (the
// router's: no ACK reopened the flow window within its SlowAfter),
// "outbound_cap" (Push found the connection's queue full) and
// "write_buffer" (overWriteBuffer). Each is counted where it is decided:
// delivery.Stats.SlowConsumers, and SlowConsumers here.

// routerCloses are the reasons of the closes package delivery asks for
// (delivery.Sessions.Close), by code.
var routerCloses = map[protocol.Code]string{
	protocol.CodeReplaced:     "a newer login of this user took over",
	protocol.CodeSlowConsumer: "window: flow window full for longer than the router allows (no ACK reopened it)",
	protocol.CodeBadAck:       "LOGIN ack beyond the mailbox's last committed seq",
	protocol.CodeInternal:     "storage failed reading this user's mailbox",
}

// Reasons of closes that are not failed checks.
const (
	reasonPeerError      = "peer sent ERROR"
	reasonPeerClosed     = "peer closed the connection"
	reasonLoginBusy      = "user's shard too busy for the login: GOAWAY RETRY_LATER"
	reasonHandshakesBusy = "too many Noise handshakes in progress: GOAWAY RETRY_LATER"
	reasonUnbound        = "LOGIN bad token: not bound to a device key, which a Noise login needs"
	reasonRedirected     = "user homed on another node: GOAWAY MOVED"
	reasonShuttingDown   = "server shutting down: GOAWAY SHUTTING_DOWN"
	reasonPanic          = "internal error handling this connection"
)

// logClose logs the close of c at debug level. Loop-only (OnClose).
func (s *Server) logClose(c *conn, reason string) {
	if !s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	code := "none"
	if c.closeCode != 0 {
		code = protocol.Code(c.closeCode).String()
	}
	s.cfg.Logger.Debug("gateway: connection closed", "user", c.user, "code", code, "reason", reason)
}
