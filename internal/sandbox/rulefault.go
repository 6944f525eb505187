package sandbox

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// The validation-rule fault: a CRM admin activates a rule that refuses
// every write of one object, the records the bridge sends die with a
// permanent 400, and once the rule is removed they can be retried. POST
// /sandbox/v1/faults {"validation_rule":{"object":...}} switches it on
// for one object; DELETE /sandbox/v1/faults/validation_rule (or DELETE
// /sandbox/v1/faults, which clears every fault) switches it off. Unlike
// the transport faults it is checked where records are saved (store.go,
// dv_store.go), so single-record calls, sObject Collections, Composite
// subrequests, Dataverse requests and $batch operations are all refused
// the way each API reports a per-record error, and /sandbox/v1/objects
// writes (a CRM user in the UI) too: a validation rule runs on every save.
//
// Salesforce: a record failing a validation rule is refused with the
// StatusCode FIELD_CUSTOM_VALIDATION_EXCEPTION (the StatusCode enum of
// the SOAP API WSDL, e.g. as generated in com.sforce.soap.partner.StatusCode,
// https://docs.jboss.org/teiid/7.6.0.Final/apidocs/com/sforce/soap/partner/StatusCode.html;
// restforce maps it to Restforce::ErrorCode::FieldCustomValidationException,
// https://rubydoc.info/gems/restforce/Restforce/ErrorCode/FieldCustomValidationException),
// the rule's own error message as the message, and the fields of the
// rule's error location ("fields", empty when the error shows at the top
// of the page), in the Error of "Core Data Types Used in API Calls"
// (statusCode, message, fields;
// https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm).
// That the message is the rule's text, on every save (UI, API, Data
// Loader): https://salesforcedictionary.com/errors/field-custom-validation-exception.
// The rule runs after the system validation (the schema checks of
// sf_schema.go), as in Salesforce's order of execution.
//
// Dataverse: a synchronous plug-in that refuses a write throws
// InvalidPluginExecutionException, which "returns to the caller with a
// friendly message and an IsvAborted error code"
// (https://learn.microsoft.com/power-apps/developer/data-platform/best-practices/business-logic/use-invalidpluginexecutionexception-plugin-workflow-activities);
// IsvAborted is 0x80040265 ("Web service error codes",
// https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes;
// the plug-in example of "Compose HTTP requests and handle errors",
// https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors,
// answers 400 with the plug-in's message and a HelpLink naming
// CrmException:80040265). The Web API error carries no column, so a
// rule's field is not reported on this side. The plug-in runs before the
// main operation: after the columns are read, before duplicate checks.

// dvIsvAborted is Dataverse's IsvAborted: a plug-in refused the operation.
const dvIsvAborted = "0x80040265"

// defaultRuleMessage is a rule's message when the fault gives none.
const defaultRuleMessage = "ehrbridge sandbox validation rule"

// maxRuleMessage bounds a rule's message: Salesforce's validation rule
// Error Message holds up to 255 characters.
const maxRuleMessage = 255

// ruleFault is one injected validation rule (Salesforce) or refusing
// plug-in (Dataverse) on one object.
type ruleFault struct {
	message string
	field   string
}

// ruleRequest is the body's "validation_rule".
type ruleRequest struct {
	Object  string `json:"object"`
	Message string `json:"message"`
	Field   string `json:"field"`
	// CRM is "salesforce" or "dataverse" when the object's name does not
	// say (as ?crm= for /sandbox/v1/objects).
	CRM string `json:"crm"`
}

// ruleKey keys a rule by side and lower-case name: Salesforce names are
// case-insensitive, Dataverse names lower-case.
func ruleKey(dataverse bool, name string) string {
	if dataverse {
		return "dv:" + strings.ToLower(name)
	}
	return "sf:" + strings.ToLower(name)
}

// addRule switches a rule on; it answers 400 for a bad rule.
func (s *Server) addRule(w http.ResponseWriter, req *ruleRequest) {
	switch {
	case !validName(req.Object):
		http.Error(w, "validation_rule: object must be an object's API name or a table's logical or entity set name", http.StatusBadRequest)
		return
	case req.Field != "" && !validName(req.Field):
		http.Error(w, "validation_rule: field must be a field's API name", http.StatusBadRequest)
		return
	case utf8.RuneCountInString(req.Message) > maxRuleMessage || strings.ContainsFunc(req.Message, func(r rune) bool { return r < ' ' && r != '\t' }):
		http.Error(w, "validation_rule: message must be one line of at most 255 characters", http.StatusBadRequest)
		return
	case req.CRM != "" && req.CRM != "salesforce" && req.CRM != "dataverse":
		http.Error(w, "validation_rule: crm must be salesforce or dataverse", http.StatusBadRequest)
		return
	}
	rule := ruleFault{message: req.Message, field: req.Field}
	if rule.message == "" {
		rule.message = defaultRuleMessage
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	t, dv := s.dataverseSide(req.CRM, req.Object, false)
	name := req.Object
	if dv && t != nil {
		name = t.Name
	} else if !dv {
		// Refuse an object the schema does not know, rather than a rule
		// that never fires because of a typo.
		o, apiErr := s.st.schema.object(req.Object)
		if apiErr != nil {
			http.Error(w, "validation_rule: no such Salesforce object", http.StatusBadRequest)
			return
		}
		if o != nil {
			name = o.Name
			if _, apiErr := o.field(req.Field); req.Field != "" && apiErr != nil {
				http.Error(w, "validation_rule: no such field on "+o.Name, http.StatusBadRequest)
				return
			}
		}
	}
	if s.st.rules == nil {
		s.st.rules = map[string]ruleFault{}
	}
	s.st.rules[ruleKey(dv, name)] = rule
	w.WriteHeader(http.StatusNoContent)
}

// clearRules switches every rule off.
func (s *Server) clearRules(w http.ResponseWriter, r *http.Request) {
	s.st.mu.Lock()
	s.st.rules = nil
	s.st.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// sfRule is the error of a rule on a Salesforce object, or nil. The
// caller holds the store lock.
func (s *store) sfRule(object string) *apiError {
	rule, on := s.rules[ruleKey(false, object)]
	if !on {
		return nil
	}
	var fields []string
	if rule.field != "" {
		fields = []string{rule.field}
	}
	e := errf("FIELD_CUSTOM_VALIDATION_EXCEPTION", fields, "%s", rule.message)
	e.saveError = true
	return e
}

// dvRule is the error of a plug-in refusing writes of a Dataverse
// table, by logical or entity set name, or nil. The caller holds the
// store lock.
func (s *store) dvRule(t *objectStore) *dvError {
	rule, on := s.rules[ruleKey(true, t.Name)]
	if !on {
		rule, on = s.rules[ruleKey(true, t.Prefix)]
	}
	if !on {
		return nil
	}
	return dverr(http.StatusBadRequest, dvIsvAborted, "%s", rule.message)
}

// faultUsage is the answer to a body that is not a fault.
const faultUsage = `body must be a fault: {"status":503,"count":N} | {"status":503,"seconds":S} | {"request_limit_exceeded":true,"seconds":S} | {"latency_ms":M} | {"drop_after_commit_ratio":R[,"seed":N]} | {"validation_rule":{"object":"Account"[,"message":"..."][,"field":"..."][,"crm":"salesforce|dataverse"]}}`
