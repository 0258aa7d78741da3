package instance

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/tlsfiles"
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
			o.TLS, err = tlsConfig("Forward_TLS", cmp.Or(cfg.ForwardTLSVhost, cfg.ForwardHost),
				cfg.ForwardTLSCAFile, cfg.ForwardTLSCrtFile, cfg.ForwardTLSKeyFile, cfg.ForwardTLSVerify)
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
		tc, err := tlsConfig("HTTP_TLS", "", cfg.HTTPTLSCAFile, cfg.HTTPTLSCrtFile, cfg.HTTPTLSKeyFile, cfg.HTTPTLSVerify)
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

// tlsConfig builds a sink's TLS settings; a file that cannot be read fails
// Init with the key that names it (prefix_CA_File, prefix_Crt_File).
func tlsConfig(prefix, serverName, ca, crt, key string, verify bool) (*tls.Config, error) {
	return tlsfiles.Files{ServerName: serverName, CA: ca, Crt: crt, Key: key, Verify: verify,
		CAName: prefix + "_CA_File", CrtName: prefix + "_Crt_File"}.Config()
}
