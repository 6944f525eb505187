package checkpoint

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of a payload key: AES-256.
const KeySize = 32

// Keyring holds the key payloads are sealed with and the older keys they
// may still be sealed with. Keys are told apart by an id derived from the
// key itself, so rotating needs no numbering: configure the new key as
// active and keep the old one among the previous keys until every payload
// sealed with it has aged out (or the log was compacted after a re-seal).
type Keyring struct {
	active [8]byte
	aeads  map[[8]byte]cipher.AEAD
}

// ErrUnknownKey means a payload was sealed with a key the Keyring lacks.
var ErrUnknownKey = errors.New("checkpoint: payload sealed with a key that is not configured")

// ParseKey decodes a base64 (standard or URL alphabet, padding optional)
// key of KeySize bytes. Surrounding whitespace is ignored.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("checkpoint key: %d bytes after base64 decoding, want %d", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("checkpoint key: not valid base64")
}

// NewKeyring makes a Keyring that seals with active and opens payloads
// sealed with active or any of previous.
func NewKeyring(active []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{aeads: map[[8]byte]cipher.AEAD{}}
	for i, key := range append([][]byte{active}, previous...) {
		if len(key) != KeySize {
			return nil, fmt.Errorf("checkpoint key %d: %d bytes, want %d", i+1, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := keyID(key)
		if i == 0 {
			k.active = id
		}
		k.aeads[id] = aead
	}
	return k, nil
}

// ActiveKeyID names the active key (hex), for logs and stats.
func (k *Keyring) ActiveKeyID() string { return hex.EncodeToString(k.active[:]) }

func keyID(key []byte) [8]byte {
	h := sha256.Sum256(append([]byte("ehrbridge checkpoint key id\x00"), key...))
	var id [8]byte
	copy(id[:], h[:8])
	return id
}

const sealVersion = 1

// seal encrypts plain bound to aad: version, key id, nonce, ciphertext.
func (k *Keyring) seal(plain, aad []byte) []byte {
	aead := k.aeads[k.active]
	out := make([]byte, 1+8+aead.NonceSize(), 1+8+aead.NonceSize()+len(plain)+aead.Overhead())
	out[0] = sealVersion
	copy(out[1:9], k.active[:])
	if _, err := rand.Read(out[9:]); err != nil {
		panic("checkpoint: no randomness: " + err.Error())
	}
	return aead.Seal(out, out[9:], plain, aad)
}

// open decrypts a sealed payload.
func (k *Keyring) open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 9 || sealed[0] != sealVersion {
		return nil, errors.New("checkpoint: sealed payload has an unknown format")
	}
	var id [8]byte
	copy(id[:], sealed[1:9])
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w (key id %x)", ErrUnknownKey, id)
	}
	ns := aead.NonceSize()
	if len(sealed) < 9+ns+aead.Overhead() {
		return nil, errors.New("checkpoint: sealed payload is truncated")
	}
	plain, err := aead.Open(nil, sealed[9:9+ns], sealed[9+ns:], aad)
	if err != nil {
		return nil, errors.New("checkpoint: sealed payload failed authentication (wrong key or altered data)")
	}
	return plain, nil
}

// sealedWith returns the key id a sealed value uses.
func sealedWith(sealed []byte) ([8]byte, bool) {
	var id [8]byte
	if len(sealed) < 9 || sealed[0] != sealVersion {
		return id, false
	}
	copy(id[:], sealed[1:9])
	return id, true
}
