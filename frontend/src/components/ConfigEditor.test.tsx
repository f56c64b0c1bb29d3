import React, { useState } from 'react';
import { render, screen, fireEvent } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';
import { ConfigEditor } from './ConfigEditor';
import { InhouseOptions, InhouseSecureOptions } from '../types';

type Settings = DataSourceSettings<InhouseOptions, InhouseSecureOptions>;

const SECRET = 'S3CRET-never-shown';

function settings(): Settings {
  return {
    id: 1,
    uid: 'inhouse',
    orgId: 1,
    name: 'In-house',
    type: 'seed-inhouse-datasource',
    typeName: 'In-house metrics',
    typeLogoUrl: '',
    access: 'proxy',
    url: 'https://metrics.internal:8443',
    user: '',
    database: '',
    basicAuth: true,
    basicAuthUser: 'alice',
    withCredentials: false,
    isDefault: false,
    readOnly: false,
    version: 3,
    jsonData: {
      timeout: 45,
      httpHeaderName1: 'X-Api-Key',
      tlsAuth: true,
      tlsAuthWithCACert: true,
      serverName: 'metrics.example',
      oauthPassThru: true,
      maxConcurrentQueries: 8,
      maxConnections: 32,
      someOtherKey: 'kept',
    },
    secureJsonFields: {
      basicAuthPassword: true,
      httpHeaderValue1: true,
      tlsCACert: true,
      tlsClientCert: true,
      tlsClientKey: true,
    },
    // Grafana never sends these back; if a client held them they must still not be rendered.
    secureJsonData: {
      basicAuthPassword: SECRET,
      httpHeaderValue1: SECRET,
      tlsCACert: SECRET,
      tlsClientCert: SECRET,
      tlsClientKey: SECRET,
    },
  };
}

function Harness({ initial, onState }: { initial: Settings; onState: (s: Settings) => void }) {
  const [options, setOptions] = useState(initial);
  return (
    <ConfigEditor
      options={options}
      onOptionsChange={(o) => {
        setOptions(o);
        onState(o);
      }}
    />
  );
}

describe('ConfigEditor', () => {
  it('shows the stored settings and the standard HTTP fields', () => {
    render(<Harness initial={settings()} onState={() => undefined} />);
    expect(screen.getByDisplayValue('https://metrics.internal:8443')).toBeInTheDocument();
    expect(screen.getByDisplayValue('45')).toBeInTheDocument(); // timeout
    expect(screen.getByDisplayValue('alice')).toBeInTheDocument();
    expect(screen.getByDisplayValue('X-Api-Key')).toBeInTheDocument();
    expect(screen.getByDisplayValue('metrics.example')).toBeInTheDocument();
    expect(screen.getByText('Skip TLS Verify')).toBeInTheDocument();
    expect(screen.getByText('Forward OAuth Identity')).toBeInTheDocument();
    expect(screen.getByTestId('inhouse-maxConcurrentQueries')).toHaveValue(8);
    expect(screen.getByTestId('inhouse-maxConnections')).toHaveValue(32);
    expect(screen.getByTestId('inhouse-maxResponseBytes')).toHaveValue(null);
  });

  it('never renders secrets: configured secure fields show "configured" with a reset', () => {
    const { container } = render(<Harness initial={settings()} onState={() => undefined} />);
    expect(container.innerHTML).not.toContain(SECRET);
    // basic auth password, header value, CA cert, client cert, client key
    expect(screen.getAllByDisplayValue('configured')).toHaveLength(5);
    expect(screen.getAllByRole('button', { name: /reset/i })).toHaveLength(5);
  });

  it('round-trips: edits change only their key, everything else is kept', () => {
    const initial = settings();
    let last: Settings = initial;
    render(<Harness initial={initial} onState={(s) => (last = s)} />);

    fireEvent.change(screen.getByTestId('inhouse-maxResponseBytes'), { target: { value: '1048576' } });
    fireEvent.change(screen.getByTestId('inhouse-maxConnections'), { target: { value: '' } });
    fireEvent.change(screen.getByDisplayValue('https://metrics.internal:8443'), {
      target: { value: 'http://other:8080' },
    });

    const expectedJson: InhouseOptions = { ...initial.jsonData, maxResponseBytes: 1048576 };
    delete expectedJson.maxConnections;
    expect(last).toEqual({ ...initial, url: 'http://other:8080', jsonData: expectedJson });
  });

  it('offers serverName without TLS client auth too (Grafana shows it only with client auth)', () => {
    const initial = settings();
    initial.jsonData = { ...initial.jsonData, tlsAuth: false };
    let last: Settings | undefined;
    const { unmount } = render(<Harness initial={initial} onState={(s) => (last = s)} />);
    const field = screen.getByTestId('inhouse-serverName');
    expect(field).toHaveValue('metrics.example');
    fireEvent.change(field, { target: { value: 'backend.internal' } });
    expect(last?.jsonData.serverName).toBe('backend.internal');
    expect(last?.jsonData.tlsAuth).toBe(false);
    fireEvent.change(field, { target: { value: ' ' } });
    expect(last?.jsonData).not.toHaveProperty('serverName');
    unmount();
    // with client auth Grafana's own ServerName field is shown, ours is not (no duplicate)
    render(<Harness initial={settings()} onState={() => undefined} />);
    expect(screen.queryByTestId('inhouse-serverName')).toBeNull();
    expect(screen.getAllByDisplayValue('metrics.example')).toHaveLength(1);
  });

  it('ignores limits that are not positive integers', () => {
    const onState = jest.fn();
    render(<Harness initial={settings()} onState={onState} />);
    fireEvent.change(screen.getByTestId('inhouse-maxConcurrentQueries'), { target: { value: '-3' } });
    fireEvent.change(screen.getByTestId('inhouse-maxConcurrentQueries'), { target: { value: '1.5' } });
    expect(onState).not.toHaveBeenCalled();
  });

  it('resetting a secret marks it for removal without showing it', () => {
    let last: Settings = settings();
    render(<Harness initial={settings()} onState={(s) => (last = s)} />);
    const resets = screen.getAllByRole('button', { name: /reset/i });
    fireEvent.click(resets[0]);
    const cleared = Object.entries(last.secureJsonFields).filter(([, v]) => v === false);
    expect(cleared).toHaveLength(1);
    expect(last.secureJsonData?.[cleared[0][0]]).toBe('');
  });
});
