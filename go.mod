module github.com/ehrbridge/ehrbridge

go 1.26

require (
	go.etcd.io/bbolt v1.4.3
	go.yaml.in/yaml/v3 v3.0.4
	golang.org/x/text v0.31.0
)

require golang.org/x/sys v0.29.0 // indirect
