module github.com/cloudtrail-quarantine/cloudtrail_quarantine

go 1.26

// fluent-bit-go is pinned to the 2023-07-31 pseudo-version on purpose: later
// commits write an extra field into struct flb_plugin_proxy_def at register
// time, which Fluent Bit older than 4.2.3 does not have (a memory overrun in
// the host). This version's register struct matches every Fluent Bit since 1.x.
require github.com/fluent/fluent-bit-go v0.0.0-20230731091245-a7a013e2473c

require (
	github.com/json-iterator/go v1.1.12
	github.com/tinylib/msgp v1.6.5
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/modern-go/concurrent v0.0.0-20180228061459-e0a39a4cb421 // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/philhofer/fwd v1.2.0 // indirect
	github.com/ugorji/go/codec v1.1.7 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
