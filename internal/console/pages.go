package console

// extraRoutes registers the console's pages beyond the dashboard.
func (c *Console) extraRoutes() {}
