package sandbox

import (
	"reflect"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestSettingsValidate checks the defaults crm.sandbox gets and that a
// flavor the sandbox lacks is reported, quoted.
func TestSettingsValidate(t *testing.T) {
	var s Settings
	var got configvalue.Problems
	s.Validate(&got)
	want := Settings{Flavor: FlavorSalesforce, Listen: DefaultListen, TLSListen: DefaultTLSListen}
	if len(got) != 0 || !reflect.DeepEqual(s, want) {
		t.Errorf("empty section: %+v, problems %q; want %+v", s, got, want)
	}
	s = Settings{Flavor: FlavorDataverse, Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0"}
	s.Validate(&got)
	if len(got) != 0 || s.Listen != "127.0.0.1:0" || s.TLSListen != "127.0.0.1:0" {
		t.Errorf("written addresses: %+v, problems %q; want them kept", s, got)
	}
	s = Settings{Flavor: "Dataverse"}
	s.Validate(&got)
	if want := (configvalue.Problems{`flavor: "Dataverse": use salesforce (the default) or dataverse`}); !reflect.DeepEqual(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
}
