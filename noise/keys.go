package noise

import (
	"fmt"
	"slices"

	"switchboard/internal/keyfile"
)

// KeysFileName is the server's static keys file in its data folder: lines
// "<key id> <hex private key>", owner-only, like the token keys file. The
// highest id is the current key, the one XX and XXfallback prove; the
// others are still accepted for IK while clients that pinned them move
// over (a rotation's overlap).
const KeysFileName = "noise-keys"

// MaxKeys bounds the keys the file holds: a rotation needs two at a time,
// and an IK handshake under the oldest tries every key before it.
const MaxKeys = 4

var keysFormat = keyfile.Format{
	Prefix:  "noise",
	Header:  "# Switchboard Noise static keys: <key id> <hex Curve25519 private key>. The highest id is current. Keep private.",
	MinLen:  32,
	MaxLen:  32,
	MaxKeys: MaxKeys,
}

// LoadKeys reads the static keys file at path, creating it with one fresh
// key if it does not exist (create), and returns the keys current first,
// then by falling id. It refuses a file its group or others may read.
func LoadKeys(path string, create bool) ([]Keypair, error) {
	var secrets map[uint32][]byte
	var err error
	if create {
		secrets, _, err = keysFormat.LoadOrCreate(path, freshPrivate)
	} else {
		secrets, _, err = keysFormat.Load(path)
	}
	if err != nil {
		return nil, err
	}
	ids := make([]uint32, 0, len(secrets))
	for id := range secrets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	keys := make([]Keypair, 0, len(ids))
	for _, id := range ids {
		k, err := KeypairFrom([32]byte(secrets[id]))
		if err != nil {
			return nil, fmt.Errorf("noise: %s: key %d: %w", path, id, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func freshPrivate() ([]byte, error) {
	k, err := NewKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("noise: making a key: %w", err)
	}
	return k.Private[:], nil
}

// RotateKeys adds a fresh key to the static keys file at path, with the
// next id: it becomes current (XX and XXfallback prove it) while the older
// ones are still accepted for IK. It refuses when the file holds MaxKeys
// already (RetireKeys first). It returns the new key.
func RotateKeys(path string) (Keypair, error) {
	secrets, newest, err := keysFormat.Load(path)
	if err != nil {
		return Keypair{}, err
	}
	if len(secrets) >= MaxKeys {
		return Keypair{}, fmt.Errorf("noise: %s holds %d keys, the most it may: retire the older ones first", path, len(secrets))
	}
	k, err := NewKeypair(nil)
	if err != nil {
		return Keypair{}, err
	}
	secrets[newest+1] = k.Private[:]
	return k, keysFormat.Rewrite(path, secrets)
}

// RetireKeys keeps only the current (newest) key of the static keys file
// at path: clients that pinned an older one fall back to XXfallback and
// learn the current one.
func RetireKeys(path string) error {
	secrets, newest, err := keysFormat.Load(path)
	if err != nil {
		return err
	}
	return keysFormat.Rewrite(path, map[uint32][]byte{newest: secrets[newest]})
}
