package dynamics

import (
	"context"
	"net/http"
)

// Get sends one GET below the Web API root (a metadata query such as
// EntityDefinitions(LogicalName='contact')?$expand=Attributes) and
// returns the answer as sent, whatever its status: for `ehrbridge crm
// check`, which reads metadata only. Token failures, throttling and
// 401s are errors, as for every request.
func (c *Client) Get(ctx context.Context, path string) (status int, header http.Header, body []byte, err error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.status, resp.header, resp.body, nil
}
