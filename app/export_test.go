package app

import "context"

// WrapComponent makes Run run the component called name through wrap,
// which is given the component's own run.
func WrapComponent(c *Config, name string, wrap func(ctx context.Context, run func(context.Context) error) error) {
	before := c.wrap
	c.wrap = func(cp component) component {
		if before != nil {
			cp = before(cp)
		}
		if cp.name == name {
			run := cp.run
			cp.run = func(ctx context.Context) error { return wrap(ctx, run) }
		}
		return cp
	}
}

// SimPG is simPG, for the external tests.
var SimPG = simPG
