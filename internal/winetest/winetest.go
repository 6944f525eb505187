//go:build windows && wine

// Wine 8 refuses FileDispositionInformationEx
// with an error the Go runtime does not take for "unsupported", so every
// os.Remove (and t.TempDir's clean-up) fails there. Setting the runtime's
// own switch makes os.Remove take the path Windows before 10 1607 takes.
// Built only with the wine tag and -ldflags=-checklinkname=0; never part
// of the product.
package winetest

import _ "unsafe" // go:linkname

//go:linkname deleteatFallback internal/syscall/windows.TestDeleteatFallback
var deleteatFallback bool

func init() { deleteatFallback = true }
