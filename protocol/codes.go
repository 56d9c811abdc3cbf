package protocol

import (
	"errors"
	"fmt"
)

// Code is an error code carried by ERROR, REFUSE and GOAWAY frames.
// Codes below 32 end the connection (ERROR); codes from 32 refuse one request
// and leave the connection open (REFUSE).
type Code uint16

// Connection errors: sent in an ERROR frame, after which the sender closes.
const (
	CodeProtocol             Code = 1  // malformed frame, bad varint, flags not allowed
	CodeFrameTooLarge        Code = 2  // a frame's length is over the limit
	CodeUnknownType          Code = 3  // the header names no frame type
	CodeUnsupportedVersion   Code = 4  // the preface asks for a version the server does not speak
	CodeUnsupportedTransport Code = 5  // the preface asks for a transport mode the server does not offer
	CodeNotLoggedIn          Code = 6  // a frame other than LOGIN before login
	CodeAlreadyLoggedIn      Code = 7  // a second LOGIN
	CodeBadToken             Code = 8  // the token does not verify
	CodeTokenExpired         Code = 9  // the token verified but is past its expiry
	CodeBodyTooLarge         Code = 10 // a message body over the limit
	CodeDecompression        Code = 11 // a compressed payload is corrupt, too large, or uses no negotiated dictionary
	CodeBadAck               Code = 12 // an ACK beyond what was delivered
	CodeRateLimited          Code = 13 // frames arrive faster than the per-connection limit
	CodeHandshakeTimeout     Code = 14 // no valid LOGIN in time
	CodeIdleTimeout          Code = 15 // nothing received for 1.5 × the ping interval
	CodePartialFrameTimeout  Code = 16 // a frame was started and not finished in time
	CodeSlowConsumer         Code = 17 // the client reads too slowly; its messages wait in storage
	CodeReplaced             Code = 18 // a newer login of the same user took over
	CodeServerFull           Code = 19 // the server holds as many connections as it may
	CodeShuttingDown         Code = 20 // the server is stopping (GOAWAY)
	CodeInternal             Code = 21 // the server failed; reconnect
	CodeMoved                Code = 22 // this user's home is another node: reconnect to GOAWAY.Addr at once
)

// Refusals: sent in a REFUSE frame for one request; the connection stays open.
const (
	CodeRetryLater   Code = 32 // the server is busy: retry the same frame after RetryAfter
	CodeStorage      Code = 33 // the message could not be made durable: retry
	CodeMailboxFull  Code = 34 // the recipient's mailbox is full: retry later
	CodeBadRecipient Code = 35 // no such user or group id (zero, or out of range)
	CodeNotMember    Code = 36 // the sender is not a member of the group
	CodeForbidden    Code = 37 // the group operation needs an admin
	CodeGroupFull    Code = 38 // the group has as many members as it may
	CodeQuota        Code = 39 // the sender has as much waiting in others' mailboxes as it may: retry after RetryAfter
)

var codeNames = map[Code]string{
	CodeProtocol: "PROTOCOL", CodeFrameTooLarge: "FRAME_TOO_LARGE", CodeUnknownType: "UNKNOWN_TYPE",
	CodeUnsupportedVersion: "UNSUPPORTED_VERSION", CodeUnsupportedTransport: "UNSUPPORTED_TRANSPORT",
	CodeNotLoggedIn: "NOT_LOGGED_IN", CodeAlreadyLoggedIn: "ALREADY_LOGGED_IN", CodeBadToken: "BAD_TOKEN",
	CodeTokenExpired: "TOKEN_EXPIRED", CodeBodyTooLarge: "BODY_TOO_LARGE", CodeDecompression: "DECOMPRESSION",
	CodeBadAck: "BAD_ACK", CodeRateLimited: "RATE_LIMITED", CodeHandshakeTimeout: "HANDSHAKE_TIMEOUT",
	CodeIdleTimeout: "IDLE_TIMEOUT", CodePartialFrameTimeout: "PARTIAL_FRAME_TIMEOUT",
	CodeSlowConsumer: "SLOW_CONSUMER", CodeReplaced: "REPLACED", CodeServerFull: "SERVER_FULL",
	CodeShuttingDown: "SHUTTING_DOWN", CodeInternal: "INTERNAL", CodeMoved: "MOVED",
	CodeRetryLater: "RETRY_LATER", CodeStorage: "STORAGE", CodeMailboxFull: "MAILBOX_FULL",
	CodeBadRecipient: "BAD_RECIPIENT", CodeNotMember: "NOT_MEMBER", CodeForbidden: "FORBIDDEN",
	CodeGroupFull: "GROUP_FULL", CodeQuota: "QUOTA",
}

// String returns the code's name as in docs/PROTOCOL.md, e.g. "SLOW_CONSUMER".
// It is also the metric label for closes and refusals.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CODE_%d", uint16(c))
}

// Fatal reports whether c ends the connection (an ERROR code, not a refusal).
func (c Code) Fatal() bool { return c < 32 }

// CodeOf maps a decoding error to the code the peer is told before the close.
func CodeOf(err error) Code {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge
	case errors.Is(err, ErrUnknownType):
		return CodeUnknownType
	case errors.Is(err, ErrDecompress):
		return CodeDecompression
	case errors.Is(err, ErrUnsupportedVersion):
		return CodeUnsupportedVersion
	case errors.Is(err, ErrUnsupportedTransport):
		return CodeUnsupportedTransport
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrBadPreface):
		return CodeProtocol
	}
	return CodeInternal
}
