package ehr

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// Defaults of an MLLP source's settings.
const (
	DefaultMaxFrameSize   = 10 * configvalue.MiB
	DefaultReadTimeout    = configvalue.Duration(30 * time.Second)
	DefaultIdleTimeout    = configvalue.Duration(10 * time.Minute)
	DefaultFirstFrame     = configvalue.Duration(30 * time.Second)
	DefaultWriteTimeout   = configvalue.Duration(10 * time.Second)
	DefaultMaxConnections = 256
)

// MLLPSourceConfig is one HL7 v2 over MLLP listener as an entry of the
// config file's sources.mllp gives it: declared once, here (internal/config
// uses it as its MLLPSource), with its defaults and its own checks. The
// name, the listen address (conflicts, plaintext) and the TLS files are
// checked by the config, with every other source and listener.
type MLLPSourceConfig struct {
	// Name identifies the source and is part of record keys, so it is
	// restricted to [a-z0-9][a-z0-9_-]* (at most 64 bytes) and unique.
	Name string `yaml:"name,required"`
	// Listen is the host:port to listen on; port 0 picks a free port.
	Listen string `yaml:"listen,required"`
	// MaxFrameSize bounds one MLLP frame, default 10MiB, 1KiB to 1GiB.
	MaxFrameSize configvalue.ByteSize `yaml:"max_frame_size"`
	// ReadTimeout bounds how long a started frame may take to complete,
	// default 30s.
	ReadTimeout configvalue.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a connection that sent no frame for this long,
	// default 10m.
	IdleTimeout configvalue.Duration `yaml:"idle_timeout"`
	// FirstFrameTimeout closes a new connection that has not started a
	// frame within it, default 30s.
	FirstFrameTimeout configvalue.Duration `yaml:"first_frame_timeout"`
	// WriteTimeout bounds writing one acknowledgement, default 10s.
	WriteTimeout configvalue.Duration `yaml:"write_timeout"`
	// MaxConnections bounds concurrent connections, default 256, 1 to
	// 65535; at the limit the longest-idle connection is closed to admit a
	// new one.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerAddress bounds the connections of one remote IP
	// address the same way; 0 (the default) leaves it to MaxConnections.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`
	// TLS enables TLS on the listener; nil means plain TCP, allowed only
	// on a loopback address unless InsecurePlaintext is set.
	TLS *configvalue.TLSServer `yaml:"tls"`
	// InsecurePlaintext allows plain TCP on an address that is not
	// loopback (internal/config checks it with every other opt-out).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// HashIgnore lists HL7 paths left out of the content hash that tells a
	// retransmit (same content) from a conflict (same control id, other
	// content); default [MSH-7], since some senders restamp the message
	// time when they resend.
	HashIgnore []string `yaml:"hash_ignore"`
}

// SetDefaults gives a new source its defaults before it is decoded.
func (c *MLLPSourceConfig) SetDefaults() {
	c.MaxFrameSize = DefaultMaxFrameSize
	c.ReadTimeout = DefaultReadTimeout
	c.IdleTimeout = DefaultIdleTimeout
	c.FirstFrameTimeout = DefaultFirstFrame
	c.WriteTimeout = DefaultWriteTimeout
	c.MaxConnections = DefaultMaxConnections
	c.HashIgnore = []string{"MSH-7"}
}

// Validate reports the limits out of range and the hash_ignore entries
// that are not HL7 paths; keys are relative to the source's entry.
func (c MLLPSourceConfig) Validate(r configvalue.Reporter) {
	if c.MaxFrameSize < configvalue.KiB || c.MaxFrameSize > configvalue.GiB {
		r.Add("max_frame_size", "must be between 1KiB and 1GiB, got %s", r.Show("max_frame_size", c.MaxFrameSize.String()))
	}
	for _, d := range []struct {
		key string
		val configvalue.Duration
	}{{"read_timeout", c.ReadTimeout}, {"idle_timeout", c.IdleTimeout}, {"first_frame_timeout", c.FirstFrameTimeout}, {"write_timeout", c.WriteTimeout}} {
		// 0 would mean "wait forever" to the net package and a negative
		// value would time out at once.
		if d.val <= 0 {
			r.Add(d.key, "must be greater than 0, got %s", r.Show(d.key, d.val.String()))
		}
	}
	if c.MaxConnections < 1 || c.MaxConnections > 65535 {
		r.Add("max_connections", "must be between 1 and 65535, got %s", r.Show("max_connections", strconv.Itoa(c.MaxConnections)))
	}
	if c.MaxConnectionsPerAddress < 0 || c.MaxConnectionsPerAddress > c.MaxConnections {
		r.Add("max_connections_per_address", "must be between 0 (no limit) and max_connections (%d), got %s", c.MaxConnections,
			r.Show("max_connections_per_address", strconv.Itoa(c.MaxConnectionsPerAddress)))
	}
	for j, path := range c.HashIgnore {
		if _, err := hl7.ParsePath(path); err != nil {
			r.Add(fmt.Sprintf("hash_ignore[%d]", j), "%v", err)
		}
	}
}

// HashIgnorePaths parses HashIgnore (checked by Validate) for
// [MLLPSource.HashIgnore].
func (c MLLPSourceConfig) HashIgnorePaths() ([]hl7.Path, error) {
	paths := []hl7.Path{}
	for _, p := range c.HashIgnore {
		path, err := hl7.ParsePath(p)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// NewServer is the MLLP server of the source with its limits, serving h,
// over TLS when tc is not nil (built from TLS by the caller, which
// shares that with its other listeners).
func (c MLLPSourceConfig) NewServer(h mllp.Handler, tc *tls.Config, log *slog.Logger) *mllp.Server {
	return &mllp.Server{
		Handler:                  h,
		MaxFrameSize:             int(c.MaxFrameSize),
		ReadTimeout:              c.ReadTimeout.Std(),
		IdleTimeout:              c.IdleTimeout.Std(),
		FirstFrameTimeout:        c.FirstFrameTimeout.Std(),
		WriteTimeout:             c.WriteTimeout.Std(),
		MaxConnections:           c.MaxConnections,
		MaxConnectionsPerAddress: c.MaxConnectionsPerAddress,
		TLSConfig:                tc,
		Logger:                   log,
	}
}
