module github.com/ehrbridge/ehrbridge

go 1.26

require (
	go.yaml.in/yaml/v3 v3.0.4
	golang.org/x/text v0.31.0
)
