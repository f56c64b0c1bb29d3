// Integration test: HashiCorp go-plugin (the library Grafana uses to spawn
// backend plugins) hosts the plugin binary, exactly like Grafana does, and
// calls it over gRPC with stubs generated from the project's own .proto files.
//
// Built offline in GOPATH mode by tests/integration/run_go.sh, which generates
// the hosttest/{pluginv2,goplugin,health} packages into build/gopath first.
// The contract checked here is docs/behaviour.md.
package gohost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hosttest/goplugin"
	"hosttest/health"
	"hosttest/pluginv2"
)

const pluginID = "seed-inhouse-datasource"

// Grafana's handshake (grafana-plugin-sdk-go backend/grpcplugin).
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "grafana_plugin_type",
	MagicCookieValue: "datasource",
}

// stubPlugin is a host-side GRPCPlugin: dispensing it just wraps the plugin's
// connection in a generated client stub (no RPC), as Grafana's client does.
type stubPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	wrap func(*grpc.ClientConn) interface{}
}

func (p *stubPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("host side only")
}

func (p *stubPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return p.wrap(c), nil
}

func pluginSet() plugin.PluginSet {
	return plugin.PluginSet{
		"diagnostics": &stubPlugin{wrap: func(c *grpc.ClientConn) interface{} { return pluginv2.NewDiagnosticsClient(c) }},
		"resource":    &stubPlugin{wrap: func(c *grpc.ClientConn) interface{} { return pluginv2.NewResourceClient(c) }},
		"data":        &stubPlugin{wrap: func(c *grpc.ClientConn) interface{} { return pluginv2.NewDataClient(c) }},
		"stream":      &stubPlugin{wrap: func(c *grpc.ClientConn) interface{} { return pluginv2.NewStreamClient(c) }},
	}
}

// lockedBuffer is an io.Writer safe for the concurrent writers go-plugin uses.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func pluginBinary(t *testing.T) string {
	bin := os.Getenv("PLUGIN_BIN")
	if bin == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		// tests/integration/gohost -> repo root
		bin = filepath.Join(wd, "..", "..", "..", "dist", "gpx_inhouse_linux_amd64")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		t.Fatalf("plugin binary: %v (build it, or set PLUGIN_BIN)", err)
	}
	if st.Mode()&0111 == 0 {
		t.Fatalf("plugin binary %s is not executable", abs)
	}
	return abs
}

func pctx() *pluginv2.PluginContext {
	// A data source instance with no URL configured.
	return &pluginv2.PluginContext{
		OrgId:    1,
		PluginId: pluginID,
		User:     &pluginv2.User{Login: "admin", Name: "admin", Role: "Admin"},
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Id:            1,
			Uid:           "gohost-ds",
			Name:          "gohost",
			JsonData:      []byte(`{}`),
			LastUpdatedMS: 1700000000000,
		},
	}
}

func query(refID string) *pluginv2.DataQuery {
	now := time.Now()
	return &pluginv2.DataQuery{
		RefId:         refID,
		MaxDataPoints: 100,
		IntervalMS:    1000,
		TimeRange: &pluginv2.TimeRange{
			FromEpochMS: now.Add(-time.Hour).UnixNano() / 1e6,
			ToEpochMS:   now.UnixNano() / 1e6,
		},
		Json: []byte(fmt.Sprintf(`{"refId":%q,"target":"x"}`, refID)),
	}
}

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// ---- Prometheus text helpers -------------------------------------------------

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)`)
	labelRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parseProm(text string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, lm := range labelRe.FindAllStringSubmatch(m[3], -1) {
			s.labels[lm[1]] = lm[2]
		}
		out = append(out, s)
	}
	return out
}

func sumSamples(ss []sample, name string, want map[string]string) (float64, bool) {
	total, found := 0.0, false
outer:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue outer
			}
		}
		total += s.value
		found = true
	}
	return total, found
}

// ---- the test ----------------------------------------------------------------

func TestGoPluginHost(t *testing.T) {
	bin := pluginBinary(t)
	t.Logf("plugin binary: %s", bin)

	// go-plugin 1.0.1 appends the host's whole environment after Cmd.Env, and
	// the last occurrence wins: keep the variables this test sets out of it.
	for _, k := range []string{"PLUGIN_UNIX_SOCKET_DIR", "PLUGIN_UNIX_SOCKET_GROUP", "GF_PLUGIN_LOG_LEVEL"} {
		os.Unsetenv(k)
	}

	sockDir, err := os.MkdirTemp("", "gohost")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)

	hostLog := &lockedBuffer{}
	rawStderr := &lockedBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "host",
		Level:      hclog.Trace,
		Output:     hostLog,
		JSONFormat: true,
	})

	cmd := exec.Command(bin)
	cmd.Env = []string{
		"PLUGIN_UNIX_SOCKET_DIR=" + sockDir,
		// debug so that the plugin has something to say on stderr
		"GF_PLUGIN_LOG_LEVEL=debug",
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		VersionedPlugins: map[int]plugin.PluginSet{2: pluginSet()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Cmd:              cmd,
		Logger:           logger,
		Stderr:           rawStderr,
		StartTimeout:     20 * time.Second,
	})
	killed := false
	defer func() {
		if !killed {
			client.Kill()
		}
		if t.Failed() {
			lines := strings.Split(strings.TrimRight(hostLog.String(), "\n"), "\n")
			if len(lines) > 150 {
				lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-150)}, lines[len(lines)-150:]...)
			}
			t.Logf("host log (hclog JSON, last lines):\n%s", strings.Join(lines, "\n"))
		}
	}()

	var (
		rpc      plugin.ClientProtocol
		conn     *grpc.ClientConn
		sockPath string
	)

	t.Run("handshake", func(t *testing.T) {
		start := time.Now()
		c, err := client.Client()
		if err != nil {
			t.Fatalf("client.Client(): %v", err)
		}
		t.Logf("handshake accepted after %v", time.Since(start).Round(time.Millisecond))
		rpc = c
		if p := client.Protocol(); p != plugin.ProtocolGRPC {
			t.Errorf("Protocol() = %q, want grpc", p)
		}
		if v := client.NegotiatedVersion(); v != 2 {
			t.Errorf("NegotiatedVersion() = %d, want 2", v)
		}
		gc, isGRPC := c.(*plugin.GRPCClient)
		if !isGRPC {
			t.Fatalf("client protocol is %T, want *plugin.GRPCClient", c)
		}
		conn = gc.Conn

		rc := client.ReattachConfig()
		if rc == nil || rc.Addr == nil {
			t.Fatal("no address after the handshake")
		}
		if rc.Protocol != plugin.ProtocolGRPC {
			t.Errorf("ReattachConfig.Protocol = %q", rc.Protocol)
		}
		if rc.Addr.Network() != "unix" {
			t.Errorf("address network = %q, want unix", rc.Addr.Network())
		}
		sockPath = rc.Addr.String()
	})
	if rpc == nil || conn == nil {
		t.Fatal("handshake failed; nothing else can run")
	}

	t.Run("SocketFile", func(t *testing.T) {
		if sockPath == "" {
			t.Skip("no unix socket address")
		}
		if filepath.Dir(sockPath) != filepath.Clean(sockDir) {
			t.Errorf("socket %s is not in PLUGIN_UNIX_SOCKET_DIR %s", sockPath, sockDir)
		}
		if !regexp.MustCompile(`^plugin[0-9]+$`).MatchString(filepath.Base(sockPath)) {
			t.Errorf("socket name %q does not match plugin<digits>", filepath.Base(sockPath))
		}
		st, err := os.Stat(sockPath)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		if st.Mode()&os.ModeSocket == 0 {
			t.Errorf("%s is not a socket (mode %v)", sockPath, st.Mode())
		}
		if perm := st.Mode().Perm(); perm != 0600 {
			t.Errorf("socket mode %#o, want 0600", perm)
		}
	})

	var (
		diag     pluginv2.DiagnosticsClient
		resource pluginv2.ResourceClient
		data     pluginv2.DataClient
	)
	ok := t.Run("dispense", func(t *testing.T) {
		get := func(name string) interface{} {
			raw, err := rpc.Dispense(name)
			if err != nil {
				t.Fatalf("Dispense(%q): %v", name, err)
			}
			return raw
		}
		var isType bool
		if diag, isType = get("diagnostics").(pluginv2.DiagnosticsClient); !isType {
			t.Fatal("diagnostics: wrong type")
		}
		if resource, isType = get("resource").(pluginv2.ResourceClient); !isType {
			t.Fatal("resource: wrong type")
		}
		if data, isType = get("data").(pluginv2.DataClient); !isType {
			t.Fatal("data: wrong type")
		}
		if _, isType = get("stream").(pluginv2.StreamClient); !isType {
			t.Fatal("stream: wrong type")
		}
	})
	if !ok {
		t.Fatal("dispense failed")
	}

	t.Run("Ping", func(t *testing.T) {
		if err := rpc.Ping(); err != nil {
			t.Fatalf("go-plugin Ping(): %v", err)
		}
	})

	t.Run("HealthCheck", func(t *testing.T) {
		hc := health.NewHealthClient(conn)
		for _, svc := range []string{"plugin", ""} {
			ctx, cancel := callCtx()
			resp, err := hc.Check(ctx, &health.HealthCheckRequest{Service: svc})
			cancel()
			if err != nil {
				t.Errorf("Check(%q): %v", svc, err)
				continue
			}
			if resp.Status != health.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, want SERVING", svc, resp.Status)
			}
		}
		ctx, cancel := callCtx()
		defer cancel()
		_, err := hc.Check(ctx, &health.HealthCheckRequest{Service: "no-such-service"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("Check(no-such-service): %v, want NotFound", err)
		} else if !strings.Contains(status.Convert(err).Message(), "unknown service") {
			t.Errorf("Check(no-such-service) message %q lacks 'unknown service'", status.Convert(err).Message())
		}
	})

	t.Run("CheckHealth", func(t *testing.T) {
		ctx, cancel := callCtx()
		defer cancel()
		resp, err := diag.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: pctx()})
		if err != nil {
			t.Fatalf("CheckHealth: %v", err)
		}
		if resp.Status != pluginv2.CheckHealthResponse_ERROR {
			t.Errorf("status = %v, want ERROR", resp.Status)
		}
		if !strings.Contains(strings.ToLower(resp.Message), "url") {
			t.Errorf("message %q does not mention the URL", resp.Message)
		}
		var obj map[string]interface{}
		if err := json.Unmarshal(resp.JsonDetails, &obj); err != nil || obj == nil {
			t.Errorf("jsonDetails %q is not a JSON object (%v)", resp.JsonDetails, err)
		}
	})

	checkNoBackend := func(t *testing.T, resp *pluginv2.QueryDataResponse, refIDs ...string) {
		t.Helper()
		if len(resp.Responses) != len(refIDs) {
			keys := make([]string, 0, len(resp.Responses))
			for k := range resp.Responses {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Errorf("got responses for %v, want %v", keys, refIDs)
		}
		for _, id := range refIDs {
			r, present := resp.Responses[id]
			if !present || r == nil {
				t.Errorf("refId %s: no response", id)
				continue
			}
			if r.Status != 400 {
				t.Errorf("refId %s: status %d, want 400", id, r.Status)
			}
			if !strings.Contains(r.Error, "no backend configured") {
				t.Errorf("refId %s: error %q lacks 'no backend configured'", id, r.Error)
			}
			if r.ErrorSource != "plugin" {
				t.Errorf("refId %s: errorSource %q, want plugin", id, r.ErrorSource)
			}
		}
	}

	t.Run("QueryData", func(t *testing.T) {
		ctx, cancel := callCtx()
		defer cancel()
		resp, err := data.QueryData(ctx, &pluginv2.QueryDataRequest{
			PluginContext: pctx(),
			Queries:       []*pluginv2.DataQuery{query("A"), query("B")},
		})
		if err != nil {
			t.Fatalf("QueryData: %v", err)
		}
		checkNoBackend(t, resp, "A", "B")
	})

	t.Run("QueryDataNoQueries", func(t *testing.T) {
		ctx, cancel := callCtx()
		defer cancel()
		resp, err := data.QueryData(ctx, &pluginv2.QueryDataRequest{PluginContext: pctx()})
		if err != nil {
			t.Fatalf("QueryData: %v", err)
		}
		if len(resp.Responses) != 0 {
			t.Errorf("%d responses for zero queries", len(resp.Responses))
		}
	})

	callResource := func(t *testing.T, path, method string, body []byte) []*pluginv2.CallResourceResponse {
		t.Helper()
		ctx, cancel := callCtx()
		defer cancel()
		st, err := resource.CallResource(ctx, &pluginv2.CallResourceRequest{
			PluginContext: pctx(),
			Path:          path,
			Method:        method,
			Url:           "/api/datasources/uid/gohost-ds/resources/" + path,
			Headers:       map[string]*pluginv2.StringList{"Content-Type": {Values: []string{"application/json"}}},
			Body:          body,
		})
		if err != nil {
			t.Fatalf("CallResource(%s %s): %v", method, path, err)
		}
		var out []*pluginv2.CallResourceResponse
		for {
			m, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("CallResource(%s %s) Recv: %v", method, path, err)
			}
			out = append(out, m)
		}
		if len(out) != 1 {
			t.Fatalf("CallResource(%s %s): %d messages, want 1", method, path, len(out))
		}
		return out
	}
	header := func(r *pluginv2.CallResourceResponse, name string) []string {
		for k, v := range r.Headers {
			if strings.EqualFold(k, name) && v != nil {
				return v.Values
			}
		}
		return nil
	}
	jsonError := func(t *testing.T, r *pluginv2.CallResourceResponse) string {
		t.Helper()
		var obj map[string]interface{}
		if err := json.Unmarshal(r.Body, &obj); err != nil {
			t.Errorf("body %q is not a JSON object: %v", r.Body, err)
			return ""
		}
		e, present := obj["error"]
		if !present {
			t.Errorf("body %q has no \"error\" key", r.Body)
		}
		s, _ := e.(string)
		return s
	}

	t.Run("CallResourceUnknownPath", func(t *testing.T) {
		r := callResource(t, "no-such-path", "GET", nil)[0]
		if r.Code != 404 {
			t.Errorf("code %d, want 404 (body %q)", r.Code, r.Body)
		}
		jsonError(t, r)
	})

	t.Run("CallResourceKnownPathWrongMethod", func(t *testing.T) {
		r := callResource(t, "metrics", "GET", nil)[0]
		if r.Code != 405 {
			t.Errorf("code %d, want 405 (body %q)", r.Code, r.Body)
		}
		if allow := header(r, "Allow"); len(allow) != 1 || allow[0] != "POST" {
			t.Errorf("Allow header %q, want [POST]", allow)
		}
	})

	t.Run("CallResourceKnownPathNoURL", func(t *testing.T) {
		r := callResource(t, "search", "POST", []byte(`{"target":""}`))[0]
		if r.Code != 400 {
			t.Errorf("code %d, want 400 (body %q)", r.Code, r.Body)
		}
		if e := jsonError(t, r); !strings.Contains(e, "no backend configured") {
			t.Errorf("error %q lacks 'no backend configured'", e)
		}
	})

	t.Run("StreamStdioHeldOpen", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st, err := goplugin.NewGRPCStdioClient(conn).StreamStdio(ctx, &goplugin.Empty{})
		if err != nil {
			t.Fatalf("StreamStdio: %v", err)
		}
		hdrCh := make(chan error, 1)
		go func() { _, err := st.Header(); hdrCh <- err }()
		select {
		case err := <-hdrCh:
			if err != nil {
				t.Fatalf("StreamStdio response headers: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no response headers on StreamStdio within 5 s")
		}
		type recvResult struct {
			msg *goplugin.StdioData
			err error
		}
		recvCh := make(chan recvResult, 1)
		go func() { m, err := st.Recv(); recvCh <- recvResult{m, err} }()
		select {
		case r := <-recvCh:
			t.Fatalf("StreamStdio did not stay open: message %v, error %v", r.msg, r.err)
		case <-time.After(300 * time.Millisecond):
		}
		cancel()
		select {
		case r := <-recvCh:
			if status.Code(r.err) != codes.Canceled {
				t.Errorf("after cancel: message %v, error %v; want Canceled", r.msg, r.err)
			}
		case <-time.After(2 * time.Second):
			t.Error("StreamStdio did not end within 2 s of cancelling")
		}
	})

	t.Run("UnknownMethod", func(t *testing.T) {
		cases := []struct {
			method, want string
		}{
			{"/pluginv2.Data/NoSuchMethod", "unknown method NoSuchMethod for service pluginv2.Data"},
			{"/no.such.Service/Call", "unknown service no.such.Service"},
		}
		for _, c := range cases {
			ctx, cancel := callCtx()
			err := conn.Invoke(ctx, c.method, &pluginv2.QueryDataRequest{}, &pluginv2.QueryDataResponse{})
			cancel()
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("%s: %v, want Unimplemented", c.method, err)
			} else if msg := status.Convert(err).Message(); !strings.Contains(msg, c.want) {
				t.Errorf("%s: message %q, want %q", c.method, msg, c.want)
			}
		}
		// QueryChunkedData is declared in the proto but not implemented.
		ctx, cancel := callCtx()
		defer cancel()
		st, err := data.QueryChunkedData(ctx, &pluginv2.QueryChunkedDataRequest{
			PluginContext: pctx(), Queries: []*pluginv2.DataQuery{query("A")},
		})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("QueryChunkedData: %v, want Unimplemented", err)
		} else if msg := status.Convert(err).Message(); !strings.Contains(msg, "unknown method QueryChunkedData for service pluginv2.Data") {
			t.Errorf("QueryChunkedData: message %q", msg)
		}
	})

	t.Run("DeadlineExceeded", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		st, err := goplugin.NewGRPCStdioClient(conn).StreamStdio(ctx, &goplugin.Empty{})
		if err == nil {
			var m *goplugin.StdioData
			m, err = st.Recv()
			if err == nil {
				t.Errorf("unexpected StdioData message %v", m)
			}
		}
		elapsed := time.Since(start)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("StreamStdio with a 200 ms deadline: %v, want DeadlineExceeded", err)
		}
		if elapsed < 150*time.Millisecond || elapsed > 3*time.Second {
			t.Errorf("call ended after %v, want about 200 ms", elapsed)
		}
		// The plugin still serves afterwards.
		if err := rpc.Ping(); err != nil {
			t.Errorf("Ping after the deadline: %v", err)
		}
		ctx2, cancel2 := callCtx()
		defer cancel2()
		resp, err := data.QueryData(ctx2, &pluginv2.QueryDataRequest{
			PluginContext: pctx(), Queries: []*pluginv2.DataQuery{query("A")},
		})
		if err != nil {
			t.Fatalf("QueryData after the deadline: %v", err)
		}
		checkNoBackend(t, resp, "A")
	})

	const concurrent = 64
	t.Run("ConcurrentQueryData", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		for i := 0; i < concurrent; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ctx, cancel := callCtx()
				defer cancel()
				a, b := fmt.Sprintf("A%d", i), fmt.Sprintf("B%d", i)
				resp, err := data.QueryData(ctx, &pluginv2.QueryDataRequest{
					PluginContext: pctx(),
					Queries:       []*pluginv2.DataQuery{query(a), query(b)},
				})
				if err != nil {
					errs <- fmt.Errorf("call %d: %v", i, err)
					return
				}
				for _, id := range []string{a, b} {
					r := resp.Responses[id]
					if r == nil || r.Status != 400 || !strings.Contains(r.Error, "no backend configured") {
						errs <- fmt.Errorf("call %d refId %s: %v", i, id, r)
						return
					}
				}
				if len(resp.Responses) != 2 {
					errs <- fmt.Errorf("call %d: %d responses, want 2", i, len(resp.Responses))
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			n++
			if n <= 10 {
				t.Error(err)
			}
		}
		if n > 0 {
			t.Errorf("%d of %d concurrent QueryData calls failed", n, concurrent)
		}
	})

	t.Run("CollectMetrics", func(t *testing.T) {
		var text string
		var ss []sample
		// The cancelled StreamStdio calls above are counted once the plugin
		// has processed the resets: allow a moment for that.
		deadline := time.Now().Add(2 * time.Second)
		for {
			ctx, cancel := callCtx()
			resp, err := diag.CollectMetrics(ctx, &pluginv2.CollectMetricsRequest{PluginContext: pctx()})
			cancel()
			if err != nil {
				t.Fatalf("CollectMetrics: %v", err)
			}
			if resp.Metrics == nil {
				t.Fatal("CollectMetrics: no metrics payload")
			}
			text = string(resp.Metrics.Prometheus)
			ss = parseProm(text)
			_, canc := sumSamples(ss, "grpc_server_handled_total", map[string]string{
				"grpc_service": "plugin.GRPCStdio", "grpc_method": "StreamStdio", "grpc_code": "Canceled"})
			_, dl := sumSamples(ss, "grpc_server_handled_total", map[string]string{
				"grpc_service": "plugin.GRPCStdio", "grpc_method": "StreamStdio", "grpc_code": "DeadlineExceeded"})
			if (canc || dl) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(text, "process_resident_memory_bytes") {
			t.Errorf("no process_resident_memory_bytes in:\n%s", text)
		}
		for _, name := range []string{
			"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
			"process_open_fds", "process_max_fds", "process_start_time_seconds",
			"grpc_server_started_total", "grpc_server_handled_total",
			"plugin_h2_connections_active", "plugin_grpc_calls_in_flight",
		} {
			if _, found := sumSamples(ss, name, nil); !found {
				t.Errorf("metric %s missing", name)
			}
		}
		if v, _ := sumSamples(ss, "process_resident_memory_bytes", nil); v <= 0 {
			t.Errorf("process_resident_memory_bytes = %v", v)
		}
		// QueryData: 1 (A,B) + 1 (none) + 1 (after deadline) + 64 concurrent.
		want := float64(3 + concurrent)
		if v, _ := sumSamples(ss, "grpc_server_handled_total", map[string]string{
			"grpc_service": "pluginv2.Data", "grpc_method": "QueryData", "grpc_code": "OK"}); v < want {
			t.Errorf("grpc_server_handled_total{pluginv2.Data,QueryData,OK} = %v, want >= %v", v, want)
		}
		if v, _ := sumSamples(ss, "grpc_server_started_total", map[string]string{
			"grpc_service": "pluginv2.Data", "grpc_method": "QueryData"}); v < want {
			t.Errorf("grpc_server_started_total{pluginv2.Data,QueryData} = %v, want >= %v", v, want)
		}
		canc, _ := sumSamples(ss, "grpc_server_handled_total", map[string]string{
			"grpc_service": "plugin.GRPCStdio", "grpc_method": "StreamStdio", "grpc_code": "Canceled"})
		dl, _ := sumSamples(ss, "grpc_server_handled_total", map[string]string{
			"grpc_service": "plugin.GRPCStdio", "grpc_method": "StreamStdio", "grpc_code": "DeadlineExceeded"})
		if canc+dl < 2 {
			t.Errorf("StreamStdio calls ended by cancel/deadline counted %v (Canceled) + %v (DeadlineExceeded), want >= 2", canc, dl)
		}
		if t.Failed() {
			t.Logf("metrics:\n%s", text)
		}
	})

	// Grafana's go-plugin keeps StreamStdio open for the plugin's whole life;
	// 1.0.1 does not, so open one here and leave it open through Kill().
	stdioCtx, stdioCancel := context.WithCancel(context.Background())
	defer stdioCancel()
	stdioEnded := make(chan error, 1)
	if st, err := goplugin.NewGRPCStdioClient(conn).StreamStdio(stdioCtx, &goplugin.Empty{}); err != nil {
		t.Errorf("StreamStdio before Kill: %v", err)
		stdioEnded <- err
	} else {
		go func() {
			for {
				if _, err := st.Recv(); err != nil {
					stdioEnded <- err
					return
				}
			}
		}()
	}

	t.Run("Kill", func(t *testing.T) {
		start := time.Now()
		client.Kill()
		elapsed := time.Since(start)
		killed = true
		t.Logf("Kill() returned after %v", elapsed.Round(time.Millisecond))
		if elapsed >= 2*time.Second {
			t.Errorf("Kill() took %v, want < 2 s", elapsed)
		}
		if strings.Contains(hostLog.String(), "plugin failed to exit gracefully") {
			t.Error(`host log says "plugin failed to exit gracefully" (SIGKILL path)`)
		}
		if !client.Exited() {
			t.Error("client.Exited() is false after Kill()")
		}
		ps := cmd.ProcessState
		if ps == nil {
			t.Error("no process state after Kill()")
		} else if !ps.Exited() || ps.ExitCode() != 0 {
			t.Errorf("plugin process ended with %v, want exit status 0", ps)
		}
		if sockPath != "" {
			if _, err := os.Lstat(sockPath); !os.IsNotExist(err) {
				t.Errorf("socket %s still present after exit (%v)", sockPath, err)
			}
		}
		if ents, err := os.ReadDir(sockDir); err == nil && len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("files left in PLUGIN_UNIX_SOCKET_DIR: %v", names)
		}
		select {
		case err := <-stdioEnded:
			t.Logf("held-open StreamStdio ended with: %v", err)
		case <-time.After(2 * time.Second):
			t.Error("the held-open StreamStdio did not end after the plugin stopped")
		}
	})

	t.Run("StderrStructuredLogs", func(t *testing.T) {
		checkStderr(t, rawStderr.String(), hostLog.String())
	})
}

var tsRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// checkStderr checks the plugin's stderr against the contract (one hclog JSON
// object per line) and that go-plugin parsed every line into a structured
// entry at the plugin's level, rather than falling back to raw debug text.
func checkStderr(t *testing.T, raw, host string) {
	type hostEntry struct {
		level, message string
		fields         map[string]interface{}
	}
	var entries []hostEntry
	for _, line := range strings.Split(host, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]interface{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("host log line is not JSON: %q", line)
			continue
		}
		lv, _ := m["@level"].(string)
		msg, _ := m["@message"].(string)
		entries = append(entries, hostEntry{lv, msg, m})
	}

	validLevels := map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true}
	var lines []string
	for _, l := range strings.Split(raw, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatal("the plugin wrote nothing on stderr at GF_PLUGIN_LOG_LEVEL=debug (the deadline expiry alone must be logged)")
	}
	t.Logf("%d stderr lines from the plugin", len(lines))
	levels := map[string]int{}
	used := make([]bool, len(entries))
	for i, l := range lines {
		var m map[string]interface{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("stderr line %d is not a JSON object: %q", i+1, l)
			continue
		}
		lv, _ := m["@level"].(string)
		msg, hasMsg := m["@message"].(string)
		ts, _ := m["@timestamp"].(string)
		mod, _ := m["@module"].(string)
		if !validLevels[lv] {
			t.Errorf("stderr line %d: @level %q", i+1, m["@level"])
		}
		if !hasMsg {
			t.Errorf("stderr line %d: no string @message", i+1)
		}
		if !tsRe.MatchString(ts) {
			t.Errorf("stderr line %d: @timestamp %q is not YYYY-MM-DDTHH:MM:SS.ffffffZ", i+1, m["@timestamp"])
		}
		if mod != "plugin."+pluginID {
			t.Errorf("stderr line %d: @module %q, want plugin.%s", i+1, m["@module"], pluginID)
		}
		levels[lv]++

		// go-plugin re-logs a parsed line with the plugin's message and level
		// and adds a "timestamp" key; an unparsed line becomes a debug entry
		// whose message is the raw line.
		found := false
		for j, e := range entries {
			if used[j] {
				continue
			}
			if e.message == l {
				t.Errorf("stderr line %d reached the host as raw text at %s, not as a structured entry: %q", i+1, e.level, l)
				used[j], found = true, true
				break
			}
			if _, parsed := e.fields["timestamp"]; parsed && e.message == msg && e.level == lv {
				used[j], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("stderr line %d has no structured entry at level %s in the host log: %q", i+1, lv, l)
		}
	}
	t.Logf("plugin log levels seen: %v", levels)
}
