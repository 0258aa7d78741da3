// Package tlsfiles builds a TLS client configuration from PEM files, for
// the plugin's sinks and for `cloudtrail-quarantine ship`, naming the
// setting at fault when a file cannot be used.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files are one client's TLS settings. CA, Crt and Key name the settings
// that hold those paths, for errors (Forward_TLS_CA_File, --tls-ca-file).
type Files struct {
	ServerName      string
	CA, Crt, Key    string
	CAName, CrtName string
	Verify          bool
}

// Config reads the files.
func (f Files) Config() (*tls.Config, error) {
	c := &tls.Config{ServerName: f.ServerName, InsecureSkipVerify: !f.Verify, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.CAName, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", f.CAName, f.CA)
		}
	}
	if f.Crt != "" {
		cert, err := tls.LoadX509KeyPair(f.Crt, f.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.CrtName, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
