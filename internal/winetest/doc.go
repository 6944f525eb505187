// Package winetest adapts Windows test binaries to Wine 8, which runs them
// on Linux (make test-windows, run.sh): run.sh adds an import of this
// package to each package's tests through a build overlay, builds them
// with the wine tag, and gives the Wine prefix the bcryptprimitives.dll Go
// needs (dll/bcryptprimitives.c). Nothing here is part of the product.
package winetest
