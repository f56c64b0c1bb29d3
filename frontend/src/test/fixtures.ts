import { DataSourceInstanceSettings, PluginType } from '@grafana/data';
import { BackendSrv, BackendSrvRequest, FetchResponse, setBackendSrv, TemplateSrv } from '@grafana/runtime';
import { Observable, of, throwError } from 'rxjs';
import { DataSource } from '../datasource';
import { InhouseOptions, MetricDef } from '../types';

export const UID = 'inhouse-uid';

export function instanceSettings(jsonData: InhouseOptions = {}): DataSourceInstanceSettings<InhouseOptions> {
  return {
    id: 7,
    uid: UID,
    type: 'seed-inhouse-datasource',
    name: 'In-house',
    access: 'proxy',
    readOnly: false,
    jsonData,
    meta: {
      id: 'seed-inhouse-datasource',
      name: 'In-house metrics',
      type: PluginType.datasource,
      module: '',
      baseUrl: '',
      info: {
        author: { name: 'seed' },
        description: '',
        links: [],
        logos: { small: '', large: '' },
        screenshots: [],
        updated: '',
        version: '',
      },
    },
  };
}

/** Replaces `$name` from a fixed map, like Grafana's template service would for those variables. */
export function fakeTemplateSrv(vars: Record<string, string>): TemplateSrv {
  return {
    getVariables: () => [],
    containsTemplate: (t?: string) => !!t && t.includes('$'),
    updateTimeRange: () => undefined,
    replace: (text?: string) => (text ?? '').replace(/\$(\w+)/g, (m, name: string) => vars[name] ?? m),
  } as unknown as TemplateSrv;
}

export type Answer = unknown | ((req: BackendSrvRequest) => unknown);

/**
 * A backend service whose fetch answers by URL suffix (e.g. `resources/metrics`); an answer that is an
 * Error-like `{status, data}` with status >= 400 makes the request fail as Grafana's does.
 */
export function installBackend(answers: Record<string, Answer>) {
  const fetch = jest.fn((req: BackendSrvRequest): Observable<FetchResponse> => {
    const key = Object.keys(answers).find((k) => req.url.endsWith(k) || req.url.includes(`${k}?`));
    if (key === undefined) {
      return throwError(() => ({ status: 404, data: { message: `no stub for ${req.url}` } }));
    }
    const a = answers[key];
    const data = typeof a === 'function' ? (a as (r: BackendSrvRequest) => unknown)(req) : a;
    if (typeof data === 'object' && data !== null && 'status' in data && Number((data as { status: number }).status) >= 400) {
      return throwError(() => data);
    }
    return of({
      data,
      status: 200,
      statusText: 'OK',
      ok: true,
      headers: new Headers(),
      redirected: false,
      type: 'basic',
      url: req.url,
      config: req,
    } as FetchResponse);
  });
  setBackendSrv({ fetch } as unknown as BackendSrv);
  return fetch;
}

export function newDataSource(vars: Record<string, string> = {}) {
  return new DataSource(instanceSettings(), fakeTemplateSrv(vars));
}

export const METRICS: MetricDef[] = [
  {
    label: 'CPU load',
    value: 'cpu',
    payloads: [
      {
        label: 'Namespace',
        name: 'namespace',
        type: 'select',
        reloadMetric: true,
        options: [
          { label: 'EC2', value: 'AWS/EC2' },
          { label: 'RDS', value: 'AWS/RDS' },
        ],
      },
      { name: 'instance', type: 'select', placeholder: 'Pick an instance' },
      { name: 'tags', type: 'multi-select', options: [{ value: 'a' }, { value: 'b' }] },
      { label: 'Filter', name: 'filter', type: 'input', placeholder: 'host=*' },
      { label: 'Notes', name: 'notes', type: 'textarea' },
    ],
  },
  { value: 'memory', payloads: [] },
];
