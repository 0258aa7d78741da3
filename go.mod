module github.com/cloudtrail-quarantine/cloudtrail_quarantine

go 1.26.0

// fluent-bit-go is pinned to the 2023-07-31 pseudo-version on purpose: later
// commits write an extra field into struct flb_plugin_proxy_def at register
// time, which Fluent Bit older than 4.2.3 does not have (a memory overrun in
// the host). This version's register struct matches every Fluent Bit since 1.x.
require github.com/fluent/fluent-bit-go v0.0.0-20230731091245-a7a013e2473c

require (
	github.com/json-iterator/go v1.1.12
	github.com/prometheus/client_golang v1.25.0
	github.com/prometheus/client_model v0.6.3
	github.com/prometheus/common v0.73.1
	github.com/tinylib/msgp v1.6.5
	go.etcd.io/bbolt v1.5.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pandatix/go-abnf v0.5.3 // indirect
	github.com/philhofer/fwd v1.2.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/ugorji/go/codec v1.1.7 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
