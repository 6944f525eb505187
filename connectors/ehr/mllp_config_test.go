package ehr

import (
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestMLLPSourceConfigServer checks that a source's limits reach its MLLP
// server as written (the daemon used to copy them one by one, converting
// each), and its defaults and checks.
func TestMLLPSourceConfigServer(t *testing.T) {
	var c MLLPSourceConfig
	c.SetDefaults()
	c.MaxFrameSize, c.ReadTimeout, c.MaxConnectionsPerAddress = 4*configvalue.MiB, configvalue.Duration(45*time.Second), 8
	srv := c.NewServer(nil, nil, slog.New(slog.DiscardHandler))
	if srv.MaxFrameSize != 4<<20 || srv.ReadTimeout != 45*time.Second || srv.IdleTimeout != 10*time.Minute || srv.FirstFrameTimeout != 30*time.Second ||
		srv.WriteTimeout != 10*time.Second || srv.MaxConnections != 256 || srv.MaxConnectionsPerAddress != 8 || srv.TLSConfig != nil {
		t.Errorf("server = %+v, want the settings as written", srv)
	}
	var got problemList
	c.Validate(&got)
	if len(got) != 0 {
		t.Errorf("defaults reported %q", got)
	}
	if p, err := c.HashIgnorePaths(); err != nil || len(p) != 1 {
		t.Errorf("HashIgnorePaths() = %v, %v; want MSH-7", p, err)
	}
	c = MLLPSourceConfig{MaxFrameSize: 10, MaxConnections: 2, MaxConnectionsPerAddress: 3, HashIgnore: []string{"MSH-7", "nope"}}
	got = nil
	c.Validate(&got)
	want := []string{"max_frame_size: must be between 1KiB and 1GiB, got 10B", "read_timeout: must be greater than 0, got 0s",
		"idle_timeout: must be greater than 0, got 0s", "first_frame_timeout: must be greater than 0, got 0s", "write_timeout: must be greater than 0, got 0s",
		"max_connections_per_address: must be between 0 (no limit) and max_connections (2), got 3"}
	if len(got) != len(want)+1 || !reflect.DeepEqual([]string(got[:len(want)]), want) || got[len(want)][:len("hash_ignore[1]: ")] != "hash_ignore[1]: " {
		t.Errorf("problems:\n%q\nwant\n%q and hash_ignore[1]", got, want)
	}
}
