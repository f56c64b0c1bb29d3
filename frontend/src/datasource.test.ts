import { dateTime, DataQueryRequest, CoreApp } from '@grafana/data';
import { lastValueFrom } from 'rxjs';
import { installBackend, METRICS, newDataSource, UID } from './test/fixtures';
import { InhouseQuery } from './types';

const resource = (path: string) => `/api/datasources/uid/${UID}/resources/${path}`;

describe('DataSource', () => {
  it('drops hidden queries and queries without a metric', () => {
    const ds = newDataSource();
    expect(ds.filterQuery({ refId: 'A', target: 'cpu' })).toBe(true);
    expect(ds.filterQuery({ refId: 'A', target: 'cpu', hide: true })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', target: 'cpu', hide: false })).toBe(true);
    expect(ds.filterQuery({ refId: 'A', target: '  ' })).toBe(false);
    expect(ds.filterQuery({ refId: 'A' })).toBe(false);
  });

  it('expands variables in target and payload strings and keeps the model shape', () => {
    const ds = newDataSource({ host: 'web1', region: 'eu' });
    const objectQuery: InhouseQuery = {
      refId: 'A',
      target: 'cpu.$host',
      payload: { region: '$region', list: ['$host', 3], nested: { n: 1, s: '$region-x' } },
      hide: false,
      legacyKey: { keep: '$host' },
    };
    expect(ds.applyTemplateVariables(objectQuery, {})).toEqual({
      refId: 'A',
      target: 'cpu.web1',
      payload: { region: 'eu', list: ['web1', 3], nested: { n: 1, s: 'eu-x' } },
      hide: false,
      legacyKey: { keep: '$host' },
    });
    // The saved query itself is not modified.
    expect(objectQuery.target).toBe('cpu.$host');

    const stringQuery: InhouseQuery = { refId: 'B', target: 'x', payload: '{"region":"$region"}' };
    expect(ds.applyTemplateVariables(stringQuery, {})).toEqual({ refId: 'B', target: 'x', payload: '{"region":"eu"}' });
  });

  it('sends data queries to QueryData (/api/ds/query), hidden ones left out, variables expanded', async () => {
    const fetch = installBackend({ '/api/ds/query': { results: { A: { frames: [] } } } });
    const ds = newDataSource({ host: 'web1' });
    const request = {
      requestId: 'r1',
      interval: '1m',
      intervalMs: 60000,
      maxDataPoints: 100,
      range: { from: dateTime(0), to: dateTime(3600000), raw: { from: 'now-1h', to: 'now' } },
      scopedVars: {},
      timezone: 'utc',
      app: CoreApp.Dashboard,
      startTime: 0,
      targets: [
        { refId: 'A', target: 'cpu.$host', payload: { a: '$host' } },
        { refId: 'B', target: 'memory', hide: true },
      ],
    } as unknown as DataQueryRequest<InhouseQuery>;
    await lastValueFrom(ds.query(request));
    expect(fetch).toHaveBeenCalledTimes(1);
    const req = fetch.mock.calls[0][0];
    expect(req.url).toMatch(/^\/api\/ds\/query/);
    expect(req.method).toBe('POST');
    const queries = (req.data as { queries: Array<Record<string, unknown>> }).queries;
    expect(queries).toHaveLength(1);
    expect(queries[0]).toMatchObject({ refId: 'A', target: 'cpu.web1', payload: { a: 'web1' } });
    expect(queries[0].datasource).toMatchObject({ uid: UID });
  });

  it('loads metrics and payload options through CallResource with the current metric and payload', async () => {
    const fetch = installBackend({
      'resources/metrics': METRICS,
      'resources/metric-payload-options': [{ label: 'i-1', value: 'i-1' }, { value: 2 }],
    });
    const ds = newDataSource();
    const metrics = await ds.fetchMetrics('cpu', { namespace: 'AWS/EC2' });
    expect(metrics.map((m) => m.value)).toEqual(['cpu', 'memory']);
    expect(fetch.mock.calls[0][0]).toMatchObject({
      url: resource('metrics'),
      method: 'POST',
      data: { metric: 'cpu', payload: { namespace: 'AWS/EC2' } },
    });

    const opts = await ds.fetchPayloadOptions('cpu', { namespace: 'AWS/EC2' }, 'instance');
    expect(opts).toEqual([
      { label: 'i-1', value: 'i-1' },
      { label: undefined, value: '2' },
    ]);
    expect(fetch.mock.calls[1][0]).toMatchObject({
      url: resource('metric-payload-options'),
      method: 'POST',
      data: { metric: 'cpu', payload: { namespace: 'AWS/EC2' }, name: 'instance' },
    });
  });

  it('rejects with the backend message when metrics fail or are not a list', async () => {
    installBackend({ 'resources/metrics': { status: 502, data: { message: 'backend down' } } });
    await expect(newDataSource().fetchMetrics()).rejects.toMatchObject({ data: { message: 'backend down' } });
    installBackend({ 'resources/metrics': { nope: 1 } });
    await expect(newDataSource().fetchMetrics()).rejects.toThrow('did not answer a list');
  });

  it('runs variable queries through `variable` with target, payload and range', async () => {
    const fetch = installBackend({ 'resources/variable': [{ __text: 'Web 1', __value: 'web1' }, { __text: 'db' }] });
    const ds = newDataSource({ region: 'eu' });
    const range = { from: dateTime(0), to: dateTime(60000), raw: { from: 'now-1m', to: 'now' } };
    const values = await ds.metricFindQuery({ refId: 'v', target: 'hosts.$region', payload: { zone: '$region' } }, { range });
    expect(values).toEqual([
      { text: 'Web 1', value: 'web1' },
      { text: 'db', value: 'db' },
    ]);
    expect(fetch.mock.calls[0][0]).toMatchObject({
      url: resource('variable'),
      method: 'POST',
      data: {
        payload: { target: 'hosts.eu', zone: 'eu' },
        range: { from: '1970-01-01T00:00:00.000Z', to: '1970-01-01T00:01:00.000Z', raw: { from: 'now-1m', to: 'now' } },
      },
    });

    // A plain string (variables saved by older plugin versions) is the target.
    await ds.metricFindQuery('hosts');
    expect(fetch.mock.calls[1][0].data).toEqual({ payload: { target: 'hosts' } });
  });

  it('runs variable queries through the custom variable support', async () => {
    installBackend({ 'resources/variable': ['a', 'b'] });
    const ds = newDataSource();
    const support = ds.variables as unknown as { query: (r: unknown) => ReturnType<typeof ds.query> };
    const res = await lastValueFrom(support.query({ targets: [{ refId: 'v', target: 'x' }], range: undefined, scopedVars: {} }));
    expect(res.data).toEqual([
      { text: 'a', value: 'a' },
      { text: 'b', value: 'b' },
    ]);
  });

  it('answers ad-hoc filter keys and values from tag-keys and tag-values', async () => {
    const fetch = installBackend({
      'resources/tag-keys': [
        { type: 'string', text: 'City' },
        { type: 'string', text: 'Country' },
      ],
      'resources/tag-values': [{ text: 'Berlin' }],
    });
    const ds = newDataSource();
    expect(await ds.getTagKeys()).toEqual([
      { text: 'City', value: 'City' },
      { text: 'Country', value: 'Country' },
    ]);
    expect(await ds.getTagValues({ key: 'City' })).toEqual([{ text: 'Berlin', value: 'Berlin' }]);
    expect(fetch.mock.calls[0][0]).toMatchObject({ url: resource('tag-keys'), method: 'POST' });
    expect(fetch.mock.calls[1][0]).toMatchObject({ url: resource('tag-values'), method: 'POST', data: { key: 'City' } });
  });
});
