package instance

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink/forward"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink/httpsink"
)

// newSink builds the sink Alert_Output names; errors name the key at fault.
func newSink(cfg *config.Config) (sink.Sink, error) {
	switch cfg.AlertOutput {
	case "file":
		s, err := sink.File(cfg.FilePath)
		if err != nil {
			return nil, fmt.Errorf("File_Path: %v", err)
		}
		return s, nil
	case "forward":
		o := forward.Options{Network: "tcp", Address: net.JoinHostPort(cfg.ForwardHost, strconv.Itoa(cfg.ForwardPort)), Tag: cfg.AlertTag,
			Timeout: cfg.ForwardTimeout, SharedKey: cfg.ForwardSharedKey, SelfHostname: cfg.ForwardSelfHostname,
			MaxBatchBytes: int(cfg.ForwardMaxBatchSize)}
		if cfg.ForwardUnixPath != "" {
			o.Network, o.Address = "unix", cfg.ForwardUnixPath
		}
		if cfg.ForwardTLS {
			var err error
			o.TLS, err = tlsConfig(tlsFiles{"Forward_TLS", cmp.Or(cfg.ForwardTLSVhost, cfg.ForwardHost),
				cfg.ForwardTLSCAFile, cfg.ForwardTLSCrtFile, cfg.ForwardTLSKeyFile, cfg.ForwardTLSVerify})
			if err != nil {
				return nil, err
			}
		}
		s, err := forward.New(o)
		if err != nil {
			return nil, fmt.Errorf("Forward_Host: %v", err)
		}
		return s, nil
	case "http":
		headers, _ := cfg.Headers() // validated by config.Load
		tc, err := tlsConfig(tlsFiles{prefix: "HTTP_TLS", ca: cfg.HTTPTLSCAFile, crt: cfg.HTTPTLSCrtFile, key: cfg.HTTPTLSKeyFile, verify: cfg.HTTPTLSVerify})
		if err != nil {
			return nil, err
		}
		s, err := httpsink.New(httpsink.Options{
			URL: cfg.HTTPURL, Format: httpsink.Format(cfg.HTTPFormat), Headers: headers, Timeout: cfg.HTTPTimeout, TLS: tc,
			User: cfg.HTTPUser, Password: cfg.HTTPPasswd, BearerToken: cfg.HTTPBearerToken, SplunkToken: cfg.HTTPSplunkToken,
			Source: cfg.HTTPSplunkSource, Sourcetype: cfg.HTTPSplunkSourcetype, Index: cfg.HTTPSplunkIndex, ESIndex: cfg.HTTPESIndex,
			MaxBatchBytes: int(cfg.HTTPMaxBatchSize),
		})
		if err != nil {
			return nil, fmt.Errorf("HTTP_URL: %v", err)
		}
		return s, nil
	default:
		return sink.Stdout(), nil
	}
}

// tlsFiles are a sink's TLS keys; prefix names them in errors.
type tlsFiles struct {
	prefix, serverName, ca, crt, key string
	verify                           bool
}

// tlsConfig builds a sink's TLS settings; a file that cannot be read fails
// Init with the key that names it.
func tlsConfig(f tlsFiles) (*tls.Config, error) {
	c := &tls.Config{ServerName: f.serverName, InsecureSkipVerify: !f.verify, MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("%s_CA_File: %v", f.prefix, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s_CA_File: %s holds no PEM certificate", f.prefix, f.ca)
		}
	}
	if f.crt != "" {
		cert, err := tls.LoadX509KeyPair(f.crt, f.key)
		if err != nil {
			return nil, fmt.Errorf("%s_Crt_File: %v", f.prefix, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
