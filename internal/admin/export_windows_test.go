package admin

import "testing"

// UnderWine is underWine for package admin_test.
var UnderWine = underWine

// CurrentAccount is currentAccount for package admin_test.
func CurrentAccount(t *testing.T) (string, string) { return currentAccount(t) }
