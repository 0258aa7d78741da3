// Command cloudtrail-quarantine scans CloudTrail archives with the
// plugin's rules: `cloudtrail-quarantine scan --help`.
package main

import (
	"os"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
