package daemon

import "context"

// part is one named component of a running daemon, after Prometheus' run
// group and Caddy's Provision/Cleanup. start acquires what the part needs
// (opens the log, binds its listeners, starts its own goroutines) and,
// when it fails, leaves nothing of itself behind. run, called once every
// part has started, begins serving what only makes sense when all of them
// are set (the admin endpoint, the background loops). stop releases the
// part within ctx; it is called once, only for a part whose start
// succeeded, whether or not run was called. Any of the three may be nil.
type part struct {
	name  string
	start func() error
	run   func()
	stop  func(ctx context.Context)
}

// runGroup starts its parts in order and stops them in reverse.
type runGroup struct {
	parts   []part
	started int // parts[:started] started and not yet stopped
}

// add appends a part; parts start in the order they are added.
func (g *runGroup) add(p part) { g.parts = append(g.parts, p) }

// start starts every part in order. When a part fails to start, the
// parts already started are stopped in reverse (with ctx) and its error is
// returned.
func (g *runGroup) start(ctx context.Context) error {
	for _, p := range g.parts {
		if p.start != nil {
			if err := p.start(); err != nil {
				g.stop(ctx)
				return err
			}
		}
		g.started++
	}
	return nil
}

// run calls the parts' run hooks in order, once every part has started.
func (g *runGroup) run() {
	for _, p := range g.parts {
		if p.run != nil {
			p.run()
		}
	}
}

// stop stops the started parts in reverse order; a second call stops
// nothing.
func (g *runGroup) stop(ctx context.Context) {
	for g.started > 0 {
		g.started--
		if p := g.parts[g.started]; p.stop != nil {
			p.stop(ctx)
		}
	}
}

// names lists the parts in start order (for the log and tests).
func (g *runGroup) names() []string {
	out := make([]string, len(g.parts))
	for i, p := range g.parts {
		out[i] = p.name
	}
	return out
}
