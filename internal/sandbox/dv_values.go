package sandbox

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Column values are checked against the table's metadata (dvschema.json,
// or a site's EntityDefinitions) as Dataverse checks them, in a single
// request, an upsert by alternate key (whose key values become columns of
// a created row) and every request of a $batch change set alike, because
// all of them write through dvResolveBinds.
//
//   - Choice (Picklist, State, Status) values outside the column's option
//     set: 400, "A validation error occurred. The value 5 of
//     'msdyn_paymentterms' on record of type
//     'msdyn_projectcontractsplitbillingrule' is outside the valid range.
//     Accepted Values: 1,2,3,192350001" (Microsoft Learn, Project
//     Operations, "Developer notes for Payment terms"), code 0x8004431a
//     (as quoted with that text by users; Microsoft publishes the text, not
//     the code).
//   - Text longer than MaxLength: 400, 0x80044331 "A validation error
//     occurred.  The length of the 'x' attribute of the 'y' entity exceeded
//     the maximum allowed length of 'N'." (quoted with its code in
//     https://github.com/microsoft/coe-starter-kit/issues/5019, with status
//     400 in https://github.com/microsoft/powerapps-tools/issues/403).
//     Lengths count UTF-16 code units, as .NET strings do.
//   - Numbers outside MinValue..MaxValue: refused, "... is outside the valid
//     range(-100000000000 to 100000000000)" for decimal and money,
//     "... Minimum Value: 0, Maximum value: 2147483647" for whole numbers
//     (the texts quoted in https://github.com/TALXIS/tools-cli/issues/83);
//     code 0x80044331 is the sandbox's choice (the validation family of the
//     length error; no source gives the range error's code).
//   - More decimal places than Precision: not refused, rounded. Dataverse
//     stores a decimal or money value at the column's precision ("Decimal
//     precision ... also affects rounding in calculations", Microsoft Learn
//     "Decimal precision in currency and pricing"; a 0.003 price written
//     through the API at precision 2 was stored as 0.00,
//     https://scaleablesolutions.com/currency-precision-in-dynamics-crm/).
//     The sandbox rounds half away from zero, as SQL Server's decimal
//     conversion does; Microsoft does not publish the rounding mode.
//   - Required columns: only SystemRequired is enforced by the platform.
//     "You can configure an attribute to be Business Required (aka
//     ApplicationRequired), but this won't cause an error when using the
//     API ... The API only enforces when the setting is SystemRequired, but
//     this can only be set for system attributes" (Microsoft's Jim Daly,
//     https://github.com/MicrosoftDocs/powerapps-docs/issues/1580; also
//     issues/1581). System columns (the primary key, ownerid, statecode,
//     activitytypecode ...) are filled by the platform when a create leaves
//     them out, so a create is never refused for a missing column; setting
//     one to null is ("When this is set to SystemRequired, you cannot set
//     these attributes to a null value", "Update and delete table rows
//     using the Web API"). The text and code of that answer are the
//     sandbox's (0x80044331).
//
// Dataverse's own texts quote the refused value; the sandbox's leave it
// out (it may be patient data and connectors log error texts) and name the
// column, the table and the metadata instead.
const (
	dvValidation   = "0x80044331" // "A validation error occurred."
	dvOptionRange  = "0x8004431a" // an option value outside the option set
	dvTypeMismatch = "0x0"        // a JSON value of the wrong type for the column's Edm type
)

// dvTypeMismatch: Dataverse answers OData type errors with code 0x0 (e.g.
// "A binary operator with incompatible types was detected ..." in
// https://github.com/rappen/FetchXMLBuilder/issues/753); the wording of
// the sandbox's wrong-type message is its own (no source quotes
// Dataverse's answer to a JSON value of the wrong type in a body).

// dvCheckValue checks one column value against its metadata and returns
// the value to store (a decimal rounded to the column's precision).
func dvCheckValue(table string, a *dvAttribute, v any) (any, *dvError) {
	if a == nil {
		return v, nil
	}
	if v == nil {
		if a.RequiredLevel != nil && a.RequiredLevel.Value == "SystemRequired" && (a.IsValidForCreate == nil || *a.IsValidForCreate || a.IsValidForUpdate == nil || *a.IsValidForUpdate) {
			return nil, dverr(400, dvValidation, "A validation error occurred. The '%s' attribute of the '%s' entity is system required and cannot be set to null.", a.LogicalName, table)
		}
		return nil, nil
	}
	switch a.AttributeType {
	case "String", "Memo":
		s, ok := v.(string)
		if !ok {
			return nil, dverr(400, dvTypeMismatch, "A value of the wrong type was found for the property '%s' of type 'Edm.String'.", a.LogicalName)
		}
		if a.MaxLength != nil && *a.MaxLength > 0 && len(utf16.Encode([]rune(s))) > *a.MaxLength {
			return nil, dverr(400, dvValidation, "A validation error occurred.  The length of the '%s' attribute of the '%s' entity exceeded the maximum allowed length of '%d'.", a.LogicalName, table, *a.MaxLength)
		}
	case "Picklist", "State", "Status":
		n, ok := integral(v)
		if !ok {
			return nil, dverr(400, dvTypeMismatch, "A value of the wrong type was found for the property '%s' of type 'Edm.Int32'.", a.LogicalName)
		}
		if a.OptionSet != nil && len(a.OptionSet.Options) > 0 {
			accepted := make([]string, 0, len(a.OptionSet.Options))
			found := false
			for _, o := range a.OptionSet.Options {
				accepted = append(accepted, strconv.Itoa(o.Value))
				found = found || int64(o.Value) == n
			}
			if !found {
				return nil, dverr(400, dvOptionRange, "A validation error occurred. The value of '%s' on record of type '%s' is outside the valid range. Accepted Values: %s", a.LogicalName, table, strings.Join(accepted, ","))
			}
		}
	case "Integer", "BigInt":
		n, ok := integral(v)
		if !ok {
			return nil, dverr(400, dvTypeMismatch, "A value of the wrong type was found for the property '%s' of type 'Edm.Int32'.", a.LogicalName)
		}
		if (a.MinValue != nil && float64(n) < *a.MinValue) || (a.MaxValue != nil && float64(n) > *a.MaxValue) {
			return nil, dverr(400, dvValidation, "A validation error occurred. The value of '%s' on record of type '%s' is outside the valid range. Minimum Value: %s, Maximum value: %s", a.LogicalName, table, num(a.MinValue), num(a.MaxValue))
		}
	case "Decimal", "Money", "Double":
		f, ok := number(v)
		if !ok {
			return nil, dverr(400, dvTypeMismatch, "A value of the wrong type was found for the property '%s' of type 'Edm.Decimal'.", a.LogicalName)
		}
		if (a.MinValue != nil && f < *a.MinValue) || (a.MaxValue != nil && f > *a.MaxValue) {
			return nil, dverr(400, dvValidation, "A validation error occurred. The value of '%s' on record of type '%s' is outside the valid range(%s to %s).", a.LogicalName, table, num(a.MinValue), num(a.MaxValue))
		}
		if a.Precision != nil && a.AttributeType != "Double" {
			return roundDecimal(f, *a.Precision), nil
		}
		return f, nil
	}
	return v, nil
}

// integral reads a JSON number that is a whole number.
func integral(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return int64(f), true
}

// number reads a JSON number, or a numeric string (OData's
// IEEE754Compatible form of Edm.Decimal).
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	return 0, false
}

func num(p *float64) string {
	if p == nil {
		return "unbounded"
	}
	return strconv.FormatFloat(*p, 'f', -1, 64)
}

// roundDecimal rounds f to places decimal places, half away from zero,
// on its shortest decimal form (so 1.005 rounds to 1.01, as a decimal
// would, not to 1.00 as its binary value would).
func roundDecimal(f float64, places int) float64 {
	if places < 0 {
		return f
	}
	s := strconv.FormatFloat(math.Abs(f), 'f', -1, 64)
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) <= places {
		return f
	}
	digits := []byte(whole + frac[:places])
	if frac[places] >= '5' {
		i := len(digits) - 1
		for ; i >= 0; i-- {
			if digits[i] == '9' {
				digits[i] = '0'
				continue
			}
			digits[i]++
			break
		}
		if i < 0 {
			digits = append([]byte{'1'}, digits...)
		}
	}
	out := string(digits)
	if places > 0 {
		out = out[:len(out)-places] + "." + out[len(out)-places:]
	}
	r, err := strconv.ParseFloat(out, 64)
	if err != nil {
		return f // digits and a dot always parse; keep the value if not
	}
	if f < 0 {
		r = -r
	}
	return r
}
