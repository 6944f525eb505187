package salesforce

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Describe returns an sObject's describe result as Salesforce sent it
// (GET /sobjects/X/describe): metadata only, no records. An object the
// org does not have is an *Error with Status 404.
// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm)
func (c *Client) Describe(ctx context.Context, object string) (json.RawMessage, error) {
	var out json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/sobjects/"+url.PathEscape(object)+"/describe", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
