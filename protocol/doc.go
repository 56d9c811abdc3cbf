// Package protocol is Switchboard's wire format: the connection preface,
// frames, their encoders and decoders, limits, error codes, compression with a
// shared dictionary, and a small blocking client.
//
// # Frames
//
// After a four-byte preface ("SW", version, transport), both directions carry
// frames:
//
//	+----------------+---------------+-------------------------------+
//	| length varint  | header byte   | payload (length-1 bytes)      |
//	+----------------+---------------+-------------------------------+
//	                  bit 7: compressed
//	                  bit 6: flag B    (meaning depends on the type)
//	                  bit 5: flag A    (meaning depends on the type)
//	                  bits 0-4: type
//
// Length counts the header byte and the payload. Varints are unsigned LEB128,
// minimal (no trailing zero groups). Ids and sequence numbers are varints and
// never zero. docs/PROTOCOL.md is the full contract; testdata/vectors.json
// holds golden frames that other implementations can check against.
//
// # The flow of a connection
//
//	client                                   server
//	  | preface, LOGIN ---------------------->  |  token verified first
//	  | <------------------ WELCOME, BATCH…     |  backlog, in seq order
//	  | ACK (cumulative) -------------------->  |  entries deleted
//	  | SEND --------------------------------->  |  durable, then
//	  | <-------------------------- ACCEPT      |
//	  |                 (recipient) <-- DELIVER  |
//	  |                 (recipient) --> ACK      |
//	  | <-------------------------- RECEIPT     |  delivered (or read, expired)
//	  | PING --------------------------------->  |
//	  | <-------------------------- PONG        |
//	  | <-------------------- GOAWAY or ERROR   |  then the server closes
//
// # Using the codec
//
// ReadFrame splits a frame off a byte slice without blocking or allocating;
// it returns ErrIncomplete when more bytes are needed and ErrFrameTooLarge as
// soon as a declared length is over the limit. Each frame type has a struct
// whose Decode fills it from a Frame (slices alias the input) and whose Append
// appends its encoding to a caller's buffer.
package protocol
