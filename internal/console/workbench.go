package console

func (c *Console) workbenchRoutes() {}

func (c *Console) analyse(payload []byte) (any, any) { return nil, nil }
