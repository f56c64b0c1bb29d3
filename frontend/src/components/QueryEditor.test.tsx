import React, { useState } from 'react';
import { CoreApp } from '@grafana/data';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { QueryEditor } from './QueryEditor';
import { installBackend, METRICS, newDataSource } from '../test/fixtures';
import { InhouseQuery } from '../types';
import type { DataSource } from '../datasource';

function openSelect(label: string) {
  const input = screen.getByLabelText(label);
  fireEvent.focus(input);
  fireEvent.keyDown(input, { key: 'ArrowDown', keyCode: 40 });
}

/** Holds the query like Grafana does, so successive edits build on each other. */
function setup(ds: DataSource, initial: InhouseQuery, app?: CoreApp) {
  const changes: InhouseQuery[] = [];
  const onRunQuery = jest.fn();
  function Host() {
    const [query, setQuery] = useState(initial);
    return (
      <QueryEditor
        datasource={ds}
        query={query}
        onRunQuery={onRunQuery}
        app={app}
        onChange={(q) => {
          changes.push(q);
          setQuery(q);
        }}
      />
    );
  }
  render(<Host />);
  return { changes, onRunQuery };
}

describe('QueryEditor', () => {
  it('fills the metric picker from `metrics` and keeps unknown keys when a metric is picked', async () => {
    const fetch = installBackend({ 'resources/metrics': METRICS });
    const initial: InhouseQuery = { refId: 'A', target: '', hide: false, datasource: { uid: 'x' }, legacy: { a: [1] } };
    const { changes, onRunQuery } = setup(newDataSource(), initial);

    await waitFor(() => expect(fetch).toHaveBeenCalledTimes(1));
    expect(fetch.mock.calls[0][0]).toMatchObject({ url: expect.stringMatching(/resources\/metrics$/), data: { metric: '', payload: {} } });

    openSelect('Metric');
    expect(await screen.findByText('CPU load')).toBeInTheDocument();
    expect(screen.getByText('memory')).toBeInTheDocument();
    fireEvent.click(screen.getByText('CPU load'));

    expect(changes).toEqual([{ ...initial, target: 'cpu' }]);
    expect(onRunQuery).toHaveBeenCalledTimes(1);
    // The chosen metric's payload fields appear.
    expect(screen.getByLabelText('Namespace')).toBeInTheDocument();
    expect(screen.getByLabelText('instance')).toBeInTheDocument();
    expect(screen.getByLabelText('tags')).toBeInTheDocument();
    expect(screen.getByLabelText('Filter')).toBeInTheDocument();
    expect(screen.getByLabelText('Notes')).toBeInTheDocument();
  });

  it('works as the alert rule editor mounts it (UnifiedAlerting, no panel data or range)', async () => {
    installBackend({ 'resources/metrics': METRICS });
    const initial: InhouseQuery = { refId: 'A', target: '', datasource: { uid: 'x' } };
    const { changes } = setup(newDataSource(), initial, CoreApp.UnifiedAlerting);
    openSelect('Metric');
    fireEvent.click(await screen.findByText('CPU load'));
    expect(changes).toEqual([{ ...initial, target: 'cpu' }]);
    expect(screen.getByLabelText('Namespace')).toBeInTheDocument();
  });

  it('shows a loading state while metrics load', async () => {
    let release: (v: unknown) => void = () => undefined;
    const ds = newDataSource();
    jest.spyOn(ds, 'fetchMetrics').mockReturnValue(new Promise((r) => (release = r)) as never);
    setup(ds, { refId: 'A', target: '' });
    expect(screen.getByText('Loading metrics…')).toBeInTheDocument();
    await act(async () => release(METRICS));
    expect(screen.getByText('Select a metric')).toBeInTheDocument();
  });

  it('edits payload fields, keeps a string payload a string, reloads metrics for reloadMetric', async () => {
    const fetch = installBackend({
      'resources/metrics': METRICS,
      'resources/metric-payload-options': [{ label: 'i-0abc', value: 'i-0abc' }],
    });
    const initial: InhouseQuery = { refId: 'A', target: 'cpu', payload: '{"keep":1}', extra: true };
    const { changes, onRunQuery } = setup(newDataSource(), initial);
    await screen.findByLabelText('Namespace');

    // Static options; reloadMetric asks `metrics` again with the new payload.
    openSelect('Namespace');
    fireEvent.click(await screen.findByText('RDS'));
    expect(changes[0]).toEqual({ ...initial, payload: '{"keep":1,"namespace":"AWS/RDS"}' });
    await waitFor(() => expect(fetch).toHaveBeenCalledTimes(2));
    expect(fetch.mock.calls[1][0].data).toEqual({ metric: 'cpu', payload: { keep: 1, namespace: 'AWS/RDS' } });

    // No static options: loaded from metric-payload-options when opened.
    openSelect('instance');
    fireEvent.click(await screen.findByText('i-0abc'));
    expect(fetch.mock.calls[2][0]).toMatchObject({
      url: expect.stringMatching(/resources\/metric-payload-options$/),
      data: { metric: 'cpu', payload: { keep: 1, namespace: 'AWS/RDS' }, name: 'instance' },
    });
    expect(changes[1].payload).toBe('{"keep":1,"namespace":"AWS/RDS","instance":"i-0abc"}');

    // Inputs commit on blur.
    const filter = screen.getByLabelText('Filter');
    fireEvent.change(filter, { target: { value: 'host=web*' } });
    fireEvent.blur(filter);
    expect(JSON.parse(changes[2].payload as string)).toEqual({
      keep: 1,
      namespace: 'AWS/RDS',
      instance: 'i-0abc',
      filter: 'host=web*',
    });
    expect(changes[2]).toMatchObject({ refId: 'A', target: 'cpu', extra: true });
    expect(onRunQuery).toHaveBeenCalledTimes(3);
  });

  it('shows the error when metrics cannot be loaded, and falls back to the raw payload editor', async () => {
    installBackend({ 'resources/metrics': { status: 502, data: { message: 'backend refused the connection' } } });
    const initial: InhouseQuery = { refId: 'A', target: 'cpu', payload: { a: 1 } };
    const { changes, onRunQuery } = setup(newDataSource(), initial);
    const alert = await screen.findByTestId('inhouse-metrics-error');
    expect(alert).toHaveTextContent('Could not load metrics');
    expect(alert).toHaveTextContent('backend refused the connection');

    const raw = screen.getByLabelText('Payload (JSON)');
    expect(raw).toHaveValue(JSON.stringify({ a: 1 }, null, 2));
    fireEvent.change(raw, { target: { value: '{"a": 2, "b": "$host"}' } });
    fireEvent.blur(raw);
    expect(changes).toEqual([{ ...initial, payload: { a: 2, b: '$host' } }]);
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  it('refuses invalid JSON in the raw editor without changing the query', async () => {
    installBackend({ 'resources/metrics': METRICS });
    const { changes } = setup(newDataSource(), { refId: 'A', target: 'memory' });
    await waitFor(() => expect(screen.getByText('memory')).toBeInTheDocument());
    fireEvent.click(screen.getByRole('checkbox'));
    const raw = screen.getByLabelText('Payload (JSON)');
    fireEvent.change(raw, { target: { value: '{"a": ' } });
    fireEvent.blur(raw);
    expect(await screen.findByText(/not valid JSON/)).toBeInTheDocument();
    fireEvent.change(raw, { target: { value: '[1]' } });
    fireEvent.blur(raw);
    expect(await screen.findByText(/must be a JSON object/)).toBeInTheDocument();
    expect(changes).toEqual([]);
  });

  it('shows an option loading error for a payload select', async () => {
    installBackend({
      'resources/metrics': METRICS,
      'resources/metric-payload-options': { status: 500, data: { error: 'no instances table' } },
    });
    setup(newDataSource(), { refId: 'A', target: 'cpu' });
    await screen.findByLabelText('instance');
    openSelect('instance');
    expect(await screen.findByText(/Could not load options: no instances table/)).toBeInTheDocument();
  });
});
