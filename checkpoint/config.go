package checkpoint

import (
	"fmt"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// DefaultSweepInterval is how often retention runs unless
// Settings.SweepInterval says otherwise.
const DefaultSweepInterval = time.Hour

// Settings is the log's retention and encryption at rest as the config
// file's checkpoint section gives them: declared once, here
// (internal/config uses it as its CheckpointConfig), with its defaults and
// its checks. [Settings.Apply] hands it to [Options].
type Settings struct {
	// DedupeWindow is how long a done record's key is remembered, so that
	// a retransmit is recognised; default 30d.
	DedupeWindow configvalue.Duration `yaml:"dedupe_window"`
	// PayloadRetention is how long a done record keeps its payload;
	// default 7d, at most DedupeWindow.
	PayloadRetention configvalue.Duration `yaml:"payload_retention"`
	// SweepInterval is how often retention ([Log.Sweep]) runs; default 1h.
	// The daemon, which runs it, reads it.
	SweepInterval configvalue.Duration `yaml:"sweep_interval"`
	// Encryption seals payloads with AES-256-GCM; nil stores them in clear
	// (the daemon warns at start).
	Encryption *EncryptionSettings `yaml:"encryption"`
}

// EncryptionSettings names the payload keys: 32 bytes, base64 (see
// [ParseKey]), by reference only.
type EncryptionSettings struct {
	// Key is the active key (key_env / key_file), required.
	Key configvalue.SecretRef `yaml:"key"`
	// PreviousKeys stay readable after a rotation.
	PreviousKeys []KeyRef `yaml:"previous_keys"`
}

// KeyRef is one previous key (key_env / key_file).
type KeyRef struct {
	// Key is the reference to the key.
	Key configvalue.SecretRef `yaml:"key"`
}

// SetDefaults gives the section its defaults before it is decoded.
func (s *Settings) SetDefaults() {
	s.DedupeWindow = configvalue.Duration(DefaultDedupeWindow)
	s.PayloadRetention = configvalue.Duration(DefaultPayloadRetention)
	s.SweepInterval = configvalue.Duration(DefaultSweepInterval)
}

// Validate reports the periods that are not positive, a payload retention
// longer than the dedupe window and encryption without a key; keys are
// relative to the checkpoint section. The key references themselves are
// checked with every other secret by the config loader.
func (s Settings) Validate(r configvalue.Reporter) {
	for _, d := range []struct {
		key string
		val configvalue.Duration
	}{{"dedupe_window", s.DedupeWindow}, {"payload_retention", s.PayloadRetention}, {"sweep_interval", s.SweepInterval}} {
		if d.val <= 0 {
			r.Add(d.key, "must be greater than 0, got %s", r.Show(d.key, d.val.String()))
		}
	}
	if s.PayloadRetention > s.DedupeWindow {
		r.Add("payload_retention", "must not be longer than checkpoint.dedupe_window (%s)", s.DedupeWindow)
	}
	if e := s.Encryption; e != nil && !e.Key.IsSet() {
		r.Add("encryption", "key_env or key_file is required")
	}
}

// Apply sets the options the section configures: the dedupe window, the
// payload retention and the keyring of Encryption (read from its
// references, so an error names the key and never holds its value).
func (s Settings) Apply(o *Options) error {
	keyring, err := s.Encryption.Keyring()
	if err != nil {
		return err
	}
	o.DedupeWindow, o.PayloadRetention, o.Keyring = s.DedupeWindow.Std(), s.PayloadRetention.Std(), keyring
	return nil
}

// Keyring reads the keys and builds the keyring that seals payloads with
// the active key and opens those sealed with any of them; nil settings
// give a nil keyring (payloads in clear). A key file must be readable only
// by its owner ([CheckKeyFile]).
func (e *EncryptionSettings) Keyring() (*Keyring, error) {
	if e == nil {
		return nil, nil
	}
	active, err := readKey("key", e.Key)
	if err != nil {
		return nil, err
	}
	var prev [][]byte
	for i, pk := range e.PreviousKeys {
		k, err := readKey(fmt.Sprintf("previous_keys[%d]", i), pk.Key)
		if err != nil {
			return nil, err
		}
		prev = append(prev, k)
	}
	return NewKeyring(active, prev...)
}

// readKey resolves and parses one key of the encryption section (what
// names it in errors).
func readKey(what string, ref configvalue.SecretRef) ([]byte, error) {
	if err := CheckKeyFile(ref.File); ref.File != "" && err != nil {
		return nil, fmt.Errorf("checkpoint encryption %s: %w", what, err)
	}
	s, err := ref.Resolve()
	if err != nil {
		return nil, fmt.Errorf("checkpoint encryption %s: %w", what, err)
	}
	k, err := ParseKey(s)
	if err != nil {
		return nil, fmt.Errorf("checkpoint encryption %s: %w", what, err)
	}
	return k, nil
}
