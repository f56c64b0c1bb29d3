// End to end as Grafana runs it: go-plugin spawns the plugin, the plugin
// queries the project's reference backend (tools/refbackend) over HTTP.
// Frames are requested in Grafana's JSON frame format so they can be checked
// here with encoding/json (the Arrow encoding is judged by apache-arrow in
// the other suites).
package gohost

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"hosttest/pluginv2"
)

func refbackendBinary(t *testing.T) string {
	if b := os.Getenv("REFBACKEND_BIN"); b != "" {
		return b
	}
	wd, _ := os.Getwd()
	root := filepath.Join(wd, "..", "..", "..")
	for _, c := range []string{"build-asan", "build"} {
		p := filepath.Join(root, c, "tools", "refbackend", "refbackend")
		if st, err := os.Stat(p); err == nil && st.Mode()&0111 != 0 {
			return p
		}
	}
	t.Fatal("reference backend not built (make asan or make build), or set REFBACKEND_BIN")
	return ""
}

// startBackend runs refbackend on a free loopback port and returns its URL.
func startBackend(t *testing.T) string {
	cmd := exec.Command(refbackendBinary(t), "--listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening ") {
		t.Fatalf("refbackend did not start: %q %v", line, err)
	}
	return "http://" + strings.TrimSpace(strings.TrimPrefix(line, "listening "))
}

type jsonFrame struct {
	Schema struct {
		Name  string `json:"name"`
		RefID string `json:"refId"`
		Meta  struct {
			Type        string `json:"type"`
			TypeVersion []int  `json:"typeVersion"`
		} `json:"meta"`
		Fields []struct {
			Name     string            `json:"name"`
			Type     string            `json:"type"`
			Labels   map[string]string `json:"labels"`
			TypeInfo struct {
				Frame    string `json:"frame"`
				Nullable bool   `json:"nullable"`
			} `json:"typeInfo"`
		} `json:"fields"`
	} `json:"schema"`
	Data struct {
		Values [][]interface{} `json:"values"`
	} `json:"data"`
}

func TestGoPluginHostWithBackend(t *testing.T) {
	url := startBackend(t)
	bin := pluginBinary(t)
	sockDir := t.TempDir()
	os.Unsetenv("PLUGIN_UNIX_SOCKET_DIR")
	cmd := exec.Command(bin)
	cmd.Env = []string{"PLUGIN_UNIX_SOCKET_DIR=" + sockDir}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		VersionedPlugins: map[int]plugin.PluginSet{2: pluginSet()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Cmd:              cmd,
		StartTimeout:     20 * time.Second,
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin client: %v", err)
	}
	rawData, err := rpc.Dispense("data")
	if err != nil {
		t.Fatal(err)
	}
	rawDiag, _ := rpc.Dispense("diagnostics")
	rawRes, _ := rpc.Dispense("resource")
	data := rawData.(pluginv2.DataClient)
	diag := rawDiag.(pluginv2.DiagnosticsClient)
	res := rawRes.(pluginv2.ResourceClient)

	pc := &pluginv2.PluginContext{
		OrgId:    1,
		PluginId: pluginID,
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Id: 2, Uid: "gohost-backend", Url: url, JsonData: []byte(`{"maxConnections":4}`),
			LastUpdatedMS: 1700000000000,
		},
	}

	t.Run("CheckHealthOK", func(t *testing.T) {
		ctx, cancel := callCtx()
		defer cancel()
		r, err := diag.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: pc})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != pluginv2.CheckHealthResponse_OK || !strings.Contains(r.Message, "working") {
			t.Fatalf("health: %v %q", r.Status, r.Message)
		}
		var details map[string]interface{}
		if err := json.Unmarshal(r.JsonDetails, &details); err != nil || details["url"] != url {
			t.Fatalf("details %s: %v", r.JsonDetails, err)
		}
	})

	t.Run("QueryDataMixed", func(t *testing.T) {
		ctx, cancel := callCtx()
		defer cancel()
		mk := func(ref, target string) *pluginv2.DataQuery {
			q := query(ref)
			q.Json = []byte(`{"refId":"` + ref + `","target":"` + target + `"}`)
			return q
		}
		resp, err := data.QueryData(ctx, &pluginv2.QueryDataRequest{
			PluginContext: pc,
			Headers:       map[string]string{"FromAlert": "true"},
			Format:        pluginv2.DataFrameFormat_JSON,
			Queries:       []*pluginv2.DataQuery{mk("A", "sine:2"), mk("B", "table:3"), mk("C", "sine:1?status=503"), mk("D", "empty")},
		})
		if err != nil {
			t.Fatal(err)
		}
		a := resp.Responses["A"]
		if a == nil || a.Status != 200 || len(a.Frames) != 2 || a.Format != pluginv2.DataFrameFormat_JSON {
			t.Fatalf("A: %+v", a)
		}
		var f jsonFrame
		if err := json.Unmarshal(a.Frames[0], &f); err != nil {
			t.Fatalf("A frame JSON: %v", err)
		}
		if f.Schema.Meta.Type != "timeseries-multi" || len(f.Schema.Meta.TypeVersion) != 2 || f.Schema.Meta.TypeVersion[1] != 1 {
			t.Errorf("A meta: %+v", f.Schema.Meta)
		}
		if len(f.Schema.Fields) != 2 || f.Schema.Fields[0].TypeInfo.Frame != "time.Time" ||
			f.Schema.Fields[1].TypeInfo.Frame != "float64" || !f.Schema.Fields[1].TypeInfo.Nullable {
			t.Errorf("A fields: %+v", f.Schema.Fields)
		}
		if f.Schema.Fields[1].Labels["series"] != "0" || len(f.Data.Values) != 2 || len(f.Data.Values[0]) == 0 {
			t.Errorf("A labels/values: %+v %d", f.Schema.Fields[1].Labels, len(f.Data.Values))
		}
		b := resp.Responses["B"]
		if b == nil || b.Status != 200 || len(b.Frames) != 1 {
			t.Fatalf("B: %+v", b)
		}
		var tf jsonFrame
		if err := json.Unmarshal(b.Frames[0], &tf); err != nil || len(tf.Data.Values) == 0 || len(tf.Data.Values[0]) != 3 {
			t.Errorf("B table: %v %+v", err, tf.Data)
		}
		c := resp.Responses["C"]
		if c == nil || c.Status != 502 || c.ErrorSource != "downstream" || !strings.Contains(c.Error, "HTTP 503") {
			t.Errorf("C: %+v", c)
		}
		d := resp.Responses["D"]
		if d == nil || d.Status != 200 || len(d.Frames) != 0 || d.Error != "" {
			t.Errorf("D: %+v", d)
		}
	})

	t.Run("CallResourceMetrics", func(t *testing.T) {
		ctx, cancel := callCtx()
		defer cancel()
		stream, err := res.CallResource(ctx, &pluginv2.CallResourceRequest{
			PluginContext: pc, Path: "metrics", Method: "POST", Url: "metrics", Body: []byte(`{}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Code != 200 || len(m.Body) == 0 || !json.Valid(m.Body) {
			t.Fatalf("resource: %d %s", m.Code, m.Body)
		}
	})
}
