// Command cloudtrail-quarantine scans CloudTrail archives with the
// plugin's rules (`cloudtrail-quarantine scan --help`) and ships
// CloudTrail from S3 into Fluent Bit (`cloudtrail-quarantine ship --help`).
package main

import (
	"os"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/cli"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/ship"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "ship" {
		os.Exit(ship.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
