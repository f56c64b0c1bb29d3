// A stand-in for the bits of Grafana a data source plugin meets: Grafana's packages handed to the
// plugin's AMD module, a stubbed backend service, and the theme. Bundled by esbuild (build.mjs).
import React, { useState } from 'react';
import ReactDOM from 'react-dom';
import { createRoot } from 'react-dom/client';
import * as emotionCss from '@emotion/css';
import * as grafanaData from '@grafana/data';
import * as grafanaRuntime from '@grafana/runtime';
import * as grafanaUi from '@grafana/ui';
import * as rxjs from 'rxjs';
import type {
  DataSourceApi,
  DataSourceInstanceSettings,
  DataSourcePlugin,
  DataSourceSettings,
  DataQuery,
} from '@grafana/data';
import type { BackendSrv, BackendSrvRequest, FetchResponse, TemplateSrv } from '@grafana/runtime';

type AnyPlugin = DataSourcePlugin<DataSourceApi<DataQuery>, DataQuery>;

interface Harness {
  /** AMD dependency ids the plugin asked for. */
  deps: string[];
  /** Resource requests the plugin made: url + JSON body. */
  requests: Array<{ url: string; method?: string; data: unknown }>;
  ready: boolean;
  error?: string;
}

declare global {
  interface Window {
    define: ((deps: string[], factory: (...mods: unknown[]) => unknown) => void) & { amd?: object };
    harness: Harness;
  }
}

const harness: Harness = { deps: [], requests: [], ready: false };
window.harness = harness;

const UID = 'inhouse-test';

// What the stubbed in-house backend answers, by resource path (the plugin backend would proxy these).
const RESOURCES: Record<string, (body: Record<string, unknown>) => unknown> = {
  metrics: () => [
    {
      label: 'CPU utilisation',
      value: 'cpu',
      payloads: [
        {
          label: 'Namespace',
          name: 'namespace',
          type: 'select',
          placeholder: 'Select a namespace',
          options: [
            { label: 'Compute', value: 'compute' },
            { label: 'Database', value: 'db' },
          ],
        },
        { label: 'Hosts', name: 'hosts', type: 'multi-select', placeholder: 'All hosts' },
        { label: 'Filter', name: 'filter', type: 'input', placeholder: 'e.g. region=eu' },
      ],
    },
    { label: 'Memory used', value: 'memory', payloads: [] },
  ],
  'metric-payload-options': (body) =>
    body.name === 'hosts'
      ? [
          { label: 'web-1', value: 'web-1' },
          { label: 'web-2', value: 'web-2' },
        ]
      : [],
};

const fakeBackend = {
  fetch(req: BackendSrvRequest) {
    const prefix = `/api/datasources/uid/${UID}/resources/`;
    harness.requests.push({ url: req.url, method: req.method, data: req.data });
    const path = req.url.startsWith(prefix) ? req.url.slice(prefix.length) : undefined;
    const handler = path !== undefined ? RESOURCES[path] : undefined;
    if (!handler) {
      return rxjs.throwError(() => ({ status: 404, data: { message: `not stubbed: ${req.url}` } }));
    }
    const data = handler((req.data ?? {}) as Record<string, unknown>);
    const res = { data, status: 200, ok: true, statusText: 'OK', url: req.url, config: req } as unknown as FetchResponse;
    // A little latency, so the editor's loading state is real.
    return rxjs.timer(150).pipe(rxjs.map(() => res));
  },
};
grafanaRuntime.setBackendSrv(fakeBackend as unknown as BackendSrv);
grafanaRuntime.setTemplateSrv({
  getVariables: () => [],
  replace: (s?: string) => s ?? '',
  containsTemplate: () => false,
  updateTimeRange: () => undefined,
} as unknown as TemplateSrv);

// Grafana's own copies, by the ids plugins import them under.
const PROVIDED: Record<string, unknown> = {
  react: React,
  'react-dom': ReactDOM,
  '@grafana/data': grafanaData,
  '@grafana/ui': grafanaUi,
  '@grafana/runtime': grafanaRuntime,
  '@emotion/css': emotionCss,
  rxjs,
};

function loadPlugin(src: string): Promise<AnyPlugin> {
  return new Promise((resolve, reject) => {
    const define = (deps: string[], factory: (...mods: unknown[]) => unknown) => {
      harness.deps = deps;
      const missing = deps.filter((d) => !(d in PROVIDED));
      if (missing.length > 0) {
        reject(new Error(`module.js needs modules Grafana does not provide: ${missing.join(', ')}`));
        return;
      }
      const exports = factory(...deps.map((d) => PROVIDED[d])) as { plugin?: AnyPlugin };
      if (!exports?.plugin) {
        reject(new Error('module.js exports no `plugin`'));
        return;
      }
      resolve(exports.plugin);
    };
    define.amd = {};
    window.define = define;
    const script = document.createElement('script');
    script.src = src;
    script.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.appendChild(script);
  });
}

const SETTINGS: DataSourceSettings = {
  id: 1,
  uid: UID,
  orgId: 1,
  name: 'In-house metrics',
  type: 'seed-inhouse-datasource',
  typeName: 'In-house metrics',
  typeLogoUrl: '',
  access: 'proxy',
  url: 'https://metrics.internal:8443',
  user: '',
  database: '',
  basicAuth: true,
  basicAuthUser: 'grafana',
  withCredentials: false,
  isDefault: false,
  readOnly: false,
  // The harness mounts the plugin generically, so its own jsonData type is not known here.
  jsonData: {
    timeout: 30,
    httpHeaderName1: 'X-Api-Key',
    tlsAuthWithCACert: true,
    serverName: 'metrics.internal',
    maxConcurrentQueries: 16,
    maxConnections: 64,
  } as DataSourceSettings['jsonData'],
  secureJsonFields: { basicAuthPassword: true, httpHeaderValue1: true, tlsCACert: true },
};

function instanceSettings(plugin: AnyPlugin): DataSourceInstanceSettings {
  return {
    id: 1,
    uid: UID,
    type: SETTINGS.type,
    name: SETTINGS.name,
    access: 'proxy',
    readOnly: false,
    jsonData: SETTINGS.jsonData,
    meta: plugin.meta ?? ({ id: SETTINGS.type } as DataSourceInstanceSettings['meta']),
  };
}

function App({ plugin }: { plugin: AnyPlugin }) {
  const { ConfigEditor, QueryEditor } = plugin.components;
  const [options, setOptions] = useState(SETTINGS);
  const [query, setQuery] = useState<DataQuery>({ refId: 'A', target: '', payload: {}, hide: false } as DataQuery);
  const [ds] = useState(() => new plugin.DataSourceClass(instanceSettings(plugin)));
  if (!ConfigEditor || !QueryEditor) {
    throw new Error('plugin has no ConfigEditor or QueryEditor');
  }
  return (
    <div style={{ padding: 16, display: 'flex', flexDirection: 'column', gap: 24 }}>
      <section id="config" style={{ maxWidth: 900 }}>
        <h3>Config editor</h3>
        <ConfigEditor options={options} onOptionsChange={setOptions} />
        <pre id="config-state" style={{ display: 'none' }}>
          {JSON.stringify(options)}
        </pre>
      </section>
      <section id="query" style={{ maxWidth: 900, minHeight: 360 }}>
        <h3>Query editor</h3>
        <QueryEditor datasource={ds} query={query} onChange={setQuery} onRunQuery={() => undefined} />
        <pre id="query-state">{JSON.stringify(query)}</pre>
      </section>
    </div>
  );
}

async function main() {
  const theme = grafanaData.createTheme({ colors: { mode: 'dark' } });
  const plugin = await loadPlugin('/module.js');
  const root = createRoot(document.getElementById('root') as HTMLElement);
  root.render(
    <grafanaUi.ThemeContext.Provider value={theme}>
      <grafanaUi.GlobalStyles />
      <App plugin={plugin} />
      <grafanaUi.PortalContainer />
    </grafanaUi.ThemeContext.Provider>
  );
  harness.ready = true;
}

main().catch((err: unknown) => {
  harness.error = err instanceof Error ? err.message : String(err);
  console.error(err);
});
