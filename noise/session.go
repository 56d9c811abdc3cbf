package noise

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"

	"switchboard/protocol"
)

// Session is one side's transport state after a handshake: a key and a
// counter per direction. Seal and Open must be called in socket order
// (the counter is the nonce). The two directions share nothing they
// write, so one goroutine may Seal while another Opens; each direction
// is owned by one goroutine at a time. An idle connection holds a Session
// for as long as it lives, so it is kept small: 128 bytes and two 32-byte
// ciphers.
type Session struct {
	send, recv cipher.AEAD  // the writer's, the reader's
	keys       [2][32]byte  // send, receive: what State hands over
	ctr        [2]nonceWord // the next nonce to send (the writer's), to receive (the reader's)
}

// nonceWord is a direction's counter kept as the nonce Noise's ChaChaPoly
// makes of it: 4 zero bytes, then the counter, little-endian. Kept as
// the nonce itself, it needs no scratch buffer, which a writer and a
// reader of one Session would share.
type nonceWord [chacha20poly1305.NonceSize]byte

func (w *nonceWord) count() uint64   { return binary.LittleEndian.Uint64(w[4:]) }
func (w *nonceWord) set(n uint64)    { binary.LittleEndian.PutUint64(w[4:], n) }
func (w *nonceWord) next()           { w.set(w.count() + 1) }
func (w *nonceWord) exhausted() bool { return w.count() == math.MaxUint64 }
func (w *nonceWord) bytes() []byte   { return w[:] }

// State is what a Session is made of: enough to carry it on in another
// process (a handover), or to check it in a test.
type State struct {
	SendKey, RecvKey [32]byte
	SendN, RecvN     uint64
}

// Resume returns the Session st describes.
func Resume(st State) (*Session, error) {
	send, err := chacha20poly1305.New(st.SendKey[:])
	if err != nil {
		return nil, err
	}
	recv, err := chacha20poly1305.New(st.RecvKey[:])
	if err != nil {
		return nil, err
	}
	s := &Session{send: send, recv: recv, keys: [2][32]byte{st.SendKey, st.RecvKey}}
	s.ctr[0].set(st.SendN)
	s.ctr[1].set(st.RecvN)
	return s, nil
}

// State returns the session's keys and counters now.
func (s *Session) State() State {
	return State{SendKey: s.keys[0], RecvKey: s.keys[1], SendN: s.ctr[0].count(), RecvN: s.ctr[1].count()}
}

// Seal appends to dst one framed transport message carrying plaintext,
// which must be whole frames, at most MaxPlaintext bytes. It never
// allocates when dst has room for len(plaintext)+LengthLen+TagLen more.
func (s *Session) Seal(dst, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return dst, fmt.Errorf("%w: %d bytes of frames in one transport message, at most %d", ErrTooLarge, len(plaintext), MaxPlaintext)
	}
	if s.ctr[0].exhausted() {
		return dst, fmt.Errorf("noise: send counter exhausted")
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(plaintext)+TagLen))
	dst = s.send.Seal(dst, s.ctr[0].bytes(), plaintext, nil)
	s.ctr[0].next()
	return dst, nil
}

// SealFrames appends to dst frames, which must be whole frames, sealed
// into as few transport messages as fit: one when they fit one message
// (what almost every write is, so nothing is parsed), else cut at frame
// boundaries. The session's first message holds at most
// MaxFirstPlaintext bytes unless its first frame alone is longer, the
// others at most MaxPlaintext. A frame longer than MaxPlaintext alone is
// ErrTooLarge, and bytes to be cut that are not whole frames are an error
// (bytes that fit one message are not parsed: the caller's promise covers
// them); dst then holds the messages sealed before the error.
func (s *Session) SealFrames(dst, frames []byte) ([]byte, error) {
	for len(frames) > 0 {
		limit := MaxPlaintext
		if s.ctr[0].count() == 0 {
			limit = MaxFirstPlaintext
		}
		n := len(frames)
		if n > limit {
			var err error
			if n, err = wholeFrames(frames, limit); err != nil {
				return dst, err
			}
		}
		var err error
		if dst, err = s.Seal(dst, frames[:n]); err != nil {
			return dst, err
		}
		frames = frames[n:]
	}
	return dst, nil
}

// wholeFrames returns the length of the longest run of whole frames at the
// front of b that is at most limit bytes, or the first frame's length when
// it alone is longer.
func wholeFrames(b []byte, limit int) (int, error) {
	off := 0
	for off < len(b) {
		_, n, err := protocol.ReadFrame(b[off:], protocol.MaxServerFrame)
		if err != nil {
			if off > 0 {
				return off, nil // the error comes with the next message
			}
			return 0, fmt.Errorf("noise: %d bytes that are not whole frames: %w", len(b), err)
		}
		if off+n > limit && off > 0 {
			break
		}
		off += n
	}
	return off, nil
}

// Open decrypts ciphertext (as ReadTransport returns it) in place and
// returns the frames it carried, aliasing ciphertext. A message that does
// not decrypt with the next counter (forged, replayed, reordered or cut)
// is ErrDecrypt, and the session must be dropped.
func (s *Session) Open(ciphertext []byte) ([]byte, error) {
	if s.ctr[1].exhausted() {
		return nil, fmt.Errorf("%w: receive counter exhausted", ErrDecrypt)
	}
	pt, err := s.recv.Open(ciphertext[:0], s.ctr[1].bytes(), ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: message %d", ErrDecrypt, s.ctr[1].count())
	}
	s.ctr[1].next()
	return pt, nil
}
