// Package configs holds the files ehrbridge ships beside its binary that
// the binary also needs built in: the default MDM mapping of write-back,
// used when writeback.mdm_mapping names no file of the site's own.
package configs

import _ "embed"

// MDMMapping is mappings/writeback/mdm.yaml.
//
//go:embed mappings/writeback/mdm.yaml
var MDMMapping []byte

// MDMMappingName is the name the embedded mapping's problems are reported
// under.
const MDMMappingName = "(built in) configs/mappings/writeback/mdm.yaml"
